"""Which Azurite the test session uses: the pure choice, and reading the ports Azurite bound itself."""

from __future__ import annotations

import pytest

from tests.support.azurite import LOCAL_IMAGE, MICROSOFT_IMAGE, AzuriteUnavailable, Engine, choose
from valet.local.emulator import listening_ports

V = "3.37.0-valet.0123456789"  # the pinned version and the patch digest (patched_version)
UP = Engine(True, images={})
BUILT = Engine(True, images={f"{LOCAL_IMAGE}:{V}": "built locally by scripts/azurite-image.sh"})
DOWN = Engine(False, "no Docker engine answers (DockerException: socket missing)")


def test_a_given_endpoint_wins_and_the_header_shows_no_path_or_query() -> None:
    plan = choose({"VALET_TEST_STORAGE_URL": "https://acct.blob.core.windows.net/?sv=x&sig=secret",
                   "VALET_TEST_AZURITE": "container"}, DOWN, V)
    assert plan.kind == "environment"
    assert "sig" not in plan.header() and "acct.blob.core.windows.net" in plan.header()


def test_auto_uses_the_container_when_an_engine_has_the_patched_image_and_the_subprocess_otherwise() -> None:
    assert choose({}, BUILT, V).kind == "container"
    fallback = choose({}, DOWN, V)
    assert fallback.kind == "process"
    assert fallback.header() == f"azurite: npm subprocess {V} (node_modules/azurite; auto: {DOWN.reason})"
    unbuilt = choose({}, UP, V)
    assert unbuilt.kind == "process" and "azurite-image.sh" in unbuilt.header()


def test_container_mode_without_an_engine_fails_with_the_reason() -> None:
    with pytest.raises(AzuriteUnavailable, match="socket missing"):
        choose({"VALET_TEST_AZURITE": "container"}, DOWN, V)


def test_process_mode_never_needs_the_engine() -> None:
    assert choose({"VALET_TEST_AZURITE": "process"}, None, V).kind == "process"


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(AzuriteUnavailable, match="container, process"):
        choose({"VALET_TEST_AZURITE": "docker"}, UP, V)


def test_only_the_patched_local_image_is_used_by_default_never_microsofts_unpatched_one() -> None:
    microsoft = Engine(True, images={f"{MICROSOFT_IMAGE}:3.37.0": "pulled"})
    assert choose({}, microsoft, V).kind == "process"  # it lacks the block patch: the subprocess has it
    with pytest.raises(AzuriteUnavailable, match=r"patched image .* is not built"):
        choose({"VALET_TEST_AZURITE": "container"}, microsoft, V)
    plan = choose({}, BUILT, V)
    assert plan.header() == (f"azurite: testcontainers {LOCAL_IMAGE}:{V} "
                             "(built locally by scripts/azurite-image.sh; host network)")


def test_an_image_setting_is_used_as_given() -> None:
    plan = choose({"VALET_TEST_AZURITE_IMAGE": "registry.example/azurite:9"}, UP, V)
    assert plan.image == "registry.example/azurite:9"


def test_ports_are_read_from_what_azurite_prints() -> None:
    output = ("Azurite Blob service is starting at https://127.0.0.1:0\n"
              "Azurite Blob service is successfully listening at https://127.0.0.1:41697\n"
              "Azurite Queue service is starting at https://127.0.0.1:0\n"
              "Azurite Queue service is successfully listening at https://127.0.0.1:42821\n")
    assert listening_ports(output) == {"blob": 41697, "queue": 42821}
    assert listening_ports("Azurite Blob service is starting at https://127.0.0.1:0\n") == {}
