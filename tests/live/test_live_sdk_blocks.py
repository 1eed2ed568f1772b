"""Block uploads through the Azure SDKs with a create-only SAS: what only real Azure Storage can show
(service version 2026-04-06+ lets ``sp=c`` Put Block / Put Block List; valet's patched Azurite follows the rule,
see tests/integration/test_create_only_blocks.py).
Runs only when a live account is configured (see ``tests/live/test_live_azure.py``); skipped otherwise.

Each SDK is told to switch to blocks well below the file size (Python ``max_single_put_size`` /
``max_block_size``; JS ``maxSingleShotSize`` / ``blockSize``), so a 9 MiB file goes up as three blocks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from azure.storage.blob import BlobClient, ContentSettings

from tests.live.test_live_azure import runtime  # noqa: F401  (the live-account fixture)
from tests.support.samples import png
from valet import api
from valet.local.emulator import PROJECT_ROOT
from valet.runtime import Runtime

pytestmark = pytest.mark.live_azure

MIB = 1024 * 1024
DATA = png(64, 64) + os.urandom(9 * MIB)  # a PNG head; the tail makes it big enough for three 4 MiB blocks


def grant(runtime: Runtime, size: int) -> dict[str, object]:  # noqa: F811
    import azure.functions as func

    req = func.HttpRequest(method="POST", url="https://valet.example/api/uploads",
                           headers={"content-type": "application/json"},
                           body=json.dumps({"filename": "big.bin", "contentType": "application/octet-stream",
                                            "size": size, "profile": "large"}).encode())
    response = api.create_upload(lambda: runtime, req)
    assert response.status_code == 201
    return json.loads(response.get_body())  # type: ignore[no-any-return]


def test_python_sdk_block_upload_with_a_create_only_sas(runtime: Runtime) -> None:  # noqa: F811
    g = grant(runtime, len(DATA))
    blob = BlobClient.from_blob_url(str(g["uploadUrl"]), max_single_put_size=4 * MIB, max_block_size=4 * MIB)
    blob.upload_blob(DATA, max_concurrency=2, content_settings=ContentSettings("application/octet-stream"))
    owner = runtime.blob_service.get_blob_client(runtime.settings.storage.uploads_container,
                                                 str(g["blobUri"]).split("/", 4)[4])
    committed = owner.get_block_list("committed")[0]
    assert len(committed) == 3 and owner.get_blob_properties().size == len(DATA)


def test_js_sdk_block_upload_with_a_create_only_sas(runtime: Runtime, tmp_path: Path) -> None:  # noqa: F811
    node = shutil.which("node")
    if node is None or not (PROJECT_ROOT / "node_modules" / "@azure" / "storage-blob").is_dir():
        pytest.skip("node or @azure/storage-blob is not installed")
    g = grant(runtime, len(DATA))
    file = tmp_path / "big.bin"
    file.write_bytes(DATA)
    script = (
        'import {BlobClient} from "@azure/storage-blob"; import {readFileSync} from "node:fs";'
        "const [url, path] = process.argv.slice(1);"
        "const r = await new BlobClient(url).getBlockBlobClient().uploadData(readFileSync(path),"
        " {maxSingleShotSize: 4*1024*1024, blockSize: 4*1024*1024, concurrency: 2});"
        "console.log(r._response.status);"
    )
    done = subprocess.run([node, "--input-type=module", "-e", script, str(g["uploadUrl"]), str(file)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.stdout.strip().endswith("201"), done.stderr[-2000:]
    owner = runtime.blob_service.get_blob_client(runtime.settings.storage.uploads_container,
                                                 str(g["blobUri"]).split("/", 4)[4])
    assert len(owner.get_block_list("committed")[0]) == 3
