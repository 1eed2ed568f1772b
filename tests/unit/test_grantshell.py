from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from valet.local.grantshell import main, shell_assignments

GRANT = {
    "uploadUrl": "https://127.0.0.1:10000/devstoreaccount1/uploads/a/b.png?sv=x&sig=a%2Bb%3D",
    "headers": {"x-ms-blob-type": "BlockBlob", "x-ms-meta-valetgrant": "e'y.j;$(rm -rf /)"},
    "statusUrl": "http://127.0.0.1:7071/api/uploads/1",
}


def test_assignments_survive_bash_quoting_exactly() -> None:
    script = shell_assignments(GRANT) + '\nprintf "%s\\n" "$UPLOAD_URL" "${UPLOAD_HEADERS[@]}" "$STATUS_URL"'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == [GRANT["uploadUrl"], "-H", "x-ms-blob-type: BlockBlob", "-H",
                   "x-ms-meta-valetgrant: e'y.j;$(rm -rf /)", GRANT["statusUrl"]]


def test_not_a_grant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"code": "invalid_token"}))
    assert main([str(path)]) == 1
    assert "not a grant" in capsys.readouterr().err
    assert main([]) == 2
