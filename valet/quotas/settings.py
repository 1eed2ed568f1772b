"""Where the quota store lives: the Table service of the uploads account, and the table's name.

``VALET_TABLE_SERVICE_URL`` (default: derived from ``VALET_STORAGE_ACCOUNT_URL``: ``.blob.`` ->
``.table.``, or two ports up for a path-style emulator URL, Azurite's 10000/10002 convention) and
``VALET_QUOTA_TABLE`` (default ``valetquotas``). Profiles with a ``quota`` or ``tenantQuota`` use it, and
batch and idempotent grants of any profile. A decision or cancellation reaches the table only for a grant
whose signed blob name says it stored a row there (:mod:`valet.grants.naming`); a plain grant's makes no
Table request whatever is set. A grant signed before names said so falls back on what it could have stored:
a row when its profile has a quota, or when a setting names the table (``explicit``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from valet.errors import ConfigurationError

TABLE_SERVICE_URL = "VALET_TABLE_SERVICE_URL"
QUOTA_TABLE = "VALET_QUOTA_TABLE"
DEFAULT_TABLE = "valetquotas"
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")


def table_url_for(blob_url: str) -> str:
    """The Table endpoint of the account behind ``blob_url``."""
    parts = urlsplit(blob_url)
    host = parts.hostname or ""
    if ".blob." in host:
        return blob_url.replace(".blob.", ".table.", 1)
    if parts.port is not None:
        return blob_url.replace(f":{parts.port}", f":{parts.port + 2}", 1)
    return blob_url


@dataclass(frozen=True)
class QuotaSettings:
    table_url: str
    table: str = DEFAULT_TABLE
    explicit: bool = False  # a setting names the table: it exists (the templates and valet dev create it)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], blob_url: str) -> QuotaSettings:
        url = (environ.get(TABLE_SERVICE_URL) or "").strip().rstrip("/") or table_url_for(blob_url.rstrip("/"))
        if urlsplit(url).scheme not in ("https", "http") or not urlsplit(url).hostname:
            raise ConfigurationError(f"{TABLE_SERVICE_URL} must be an http(s) URL")
        table = (environ.get(QUOTA_TABLE) or "").strip() or DEFAULT_TABLE
        if not _TABLE_NAME.fullmatch(table) or table.lower().startswith("tables"):
            raise ConfigurationError(f"{QUOTA_TABLE} must be a table name (3-63 letters and digits, a letter first)")
        return cls(url, table, explicit=bool(environ.get(TABLE_SERVICE_URL) or environ.get(QUOTA_TABLE)))
