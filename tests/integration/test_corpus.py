"""Every honest file accepted (issue 27): the corpus of files written by real programs
(tests/support/corpus.py) goes through the real grant route, a real PUT to Azurite and the real validator,
under the built-in profiles; not one may be quarantined. Each accepted file is then downloaded through the
download route: storage serves it as an attachment of the verified type, whatever a browser would make
of the bytes."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import requests

from tests.adversarial.kit import hooked_validation
from tests.conftest import StorageEndpoint
from tests.integration.test_validation import Upload, grant, runtime  # noqa: F401 - fixtures
from tests.support.corpus import Corpus, Sample, build, padded_video
from valet import api
from valet.runtime import Runtime
from valet.validation.reasons import Outcome

pytestmark = pytest.mark.azurite

BUILTIN = json.loads((Path(__file__).parents[2] / "valet" / "default_profiles.json").read_text())["profiles"]
MIN_PROGRAMS = 30


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return build()


def every_profile_and_type(corpus: Corpus) -> list[tuple[str, Sample]]:
    """Each sample under its own profile, plus one sample of each type under every other built-in profile
    that lists the type (``large`` takes zips, PDFs and MP4s too)."""
    planned = [(sample.profile, sample) for sample in corpus.samples]
    covered = {(profile, sample.content_type) for profile, sample in planned}
    for profile, spec in BUILTIN.items():
        for mime in spec["types"]:
            if (profile, mime) not in covered:
                donor = next((s for s in corpus.samples if s.content_type == mime), None)
                if donor is not None:
                    planned.append((profile, replace(donor, note=f"{donor.note} (under {profile})")))
                    covered.add((profile, mime))
    return planned


def test_the_whole_corpus_is_accepted_and_downloads_as_attachments(
    corpus: Corpus, grant: Callable[..., Upload], storage_endpoint: StorageEndpoint,  # noqa: F811
) -> None:
    planned = every_profile_and_type(corpus)
    wrong: list[str] = []
    for profile, sample in planned:
        up = grant(filename=sample.filename, contentType=sample.content_type, size=len(sample.data), profile=profile)
        assert up.put(sample.data).status_code == 201
        decision = up.decide()
        if decision.outcome is not Outcome.ACCEPTED:
            wrong.append(f"{sample.producer} [{sample.note}] as {sample.content_type} in {profile}: "
                         f"{decision.reason} ({decision.detail})")
            continue
        response = api.upload_download(lambda rt=up.runtime: rt, func.HttpRequest(
            method="GET", url=f"https://valet.example/api/uploads/{up.upload_id}/download", body=b"",
            route_params={"uploadId": up.upload_id}))
        assert response.status_code == 200, response.get_body()
        got = requests.get(json.loads(response.get_body())["downloadUrl"], verify=storage_endpoint.ca_bundle,
                           timeout=60)
        assert got.status_code == 200 and got.content == sample.data
        assert got.headers["Content-Disposition"].startswith("attachment;"), sample.producer
        assert got.headers["Content-Type"] == sample.content_type, (sample.producer, got.headers["Content-Type"])

    by_producer = Counter(sample.producer for _, sample in planned)
    print(f"\ncorpus: {len(planned)} uploads, {len(corpus.producers)} producers, {len(corpus.programs)} programs")
    for producer, count in sorted(by_producer.items()):
        print(f"  {count:3d}  {producer}")
    for name, why in corpus.missing.items():
        print(f"  missing producer {name}: {why}")
    assert wrong == [], "\n".join(wrong)
    types = {(profile, sample.content_type) for profile, sample in planned}
    assert types == {(profile, mime) for profile, spec in BUILTIN.items() for mime in spec["types"]}
    assert len(corpus.programs) >= MIN_PROGRAMS, (corpus.programs, corpus.missing)


def test_a_video_with_moov_at_the_end_costs_the_head_and_one_read_of_the_tail(
    runtime: Runtime, grant: Callable[..., Upload], storage_endpoint: StorageEndpoint,  # noqa: F811
) -> None:
    """On real storage: the validator's reads of a 24 MiB ffmpeg MP4 whose moov follows its media data
    are the head (one ranged GET, with the properties) and one ranged GET at the end of mdat."""
    data = padded_video(faststart=False, total=24 * 1024 * 1024)
    up = grant(filename="clip.mp4", contentType="video/mp4", size=len(data), profile="videos")
    assert up.put(data).status_code == 201
    reads: list[str] = []

    def count(request: Any) -> None:
        http = request.http_request
        if http.method == "GET" and f"/{up.name}" in http.url.split("?")[0] and "comp=" not in http.url:
            reads.append(str(http.headers.get("x-ms-range", "whole blob")))

    validation = hooked_validation(runtime, storage_endpoint, count)
    decision = validation.validator.process(up.name)
    assert decision is not None and decision.outcome is Outcome.ACCEPTED, decision
    moov_at = data.rindex(b"moov") - 4
    first, *rest = reads
    assert first.startswith("bytes=0-") and len(rest) == 1, reads
    assert rest[0] == f"bytes={moov_at}-{len(data) - 1}", reads  # the tail read starts where the moov does
    print(f"\n24 MiB MP4, moov at the end: {len(reads)} reads of the upload: {reads}")
