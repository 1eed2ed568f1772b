"""The reference upload client (library, ``valet-upload`` and ``valet upload``).

It does what every client of the API should do: get a grant with a bearer token or an API key, upload the
file straight to storage with exactly the grant's ``uploadUrl`` and ``headers``, then poll ``statusUrl``
until the validator decided. Transient failures are retried with exponential backoff; an upload whose
SAS nears expiry renews it for the same blob (``POST /api/uploads/{uploadId}/renew``; staged blocks are
kept) and gets a fresh grant only when renewal is refused; large files go up as parallel blocks where the
service allows create-only blocks (Azure, service version 2026-04-06 and later), else as one Put Blob (up
to 5,000 MiB).

Exit codes of ``valet-upload`` (and ``valet upload``): 0 accepted (with ``--no-wait``: uploaded, decision
``pending``), 1 rejected (quarantined, or the grant was refused), 2 usage, 3 authentication/authorization
failure, 4 transient failure (gave up after retries).

Needs ``requests`` and the standard library only: nothing of the server (``valet``) is imported.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

EXIT_ACCEPTED, EXIT_REJECTED, EXIT_USAGE, EXIT_AUTH, EXIT_TRANSIENT = 0, 1, 2, 3, 4
UNDECIDED = ("pending", "retrying")  # statuses that a later poll can change
PUT_BLOB_LIMIT = 5000 * 1024 * 1024
BLOCK_BYTES = 8 * 1024 * 1024
BLOCK_VERSION = "2026-10-06"  # create-only (sp=c) Put Block needs service version 2026-04-06 or later
_TRANSIENT = {408, 429, 500, 502, 503, 504}
RENEW_BEFORE = timedelta(seconds=30)  # renew a SAS this long before it expires


class UploadError(Exception):
    """Why an upload did not end accepted; ``exit_code`` is what ``valet-upload`` returns."""

    def __init__(self, message: str, exit_code: int, code: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.code = code


@dataclass
class UploadResult:
    upload_id: str
    status: str
    reason: str | None = None
    mode: str = "single"
    grants: int = 1
    status_url: str = ""
    renewals: int = 0

    @property
    def exit_code(self) -> int:
        """0 accepted, or uploaded without waiting for the decision (``pending``); 4 when the upload waits
        for an operator (decided later, once the cause is fixed); 1 otherwise."""
        if self.status == "needs_operator":
            return EXIT_TRANSIENT
        return EXIT_ACCEPTED if self.status in ("accepted", "pending") else EXIT_REJECTED


ProgressFn = Callable[[int, int], None]


@dataclass
class ValetClient:
    base_url: str
    token: str | None = None
    api_key: str | None = None
    verify: bool | str = True
    storage_verify: bool | str = True
    retries: int = 4
    backoff: float = 0.5
    timeout: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC), repr=False)  # UTC, for expiresOn
    session: requests.Session = field(default_factory=requests.Session)
    _renew_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _renewals: int = field(default=0, repr=False)

    def __repr__(self) -> str:  # never show credentials
        return f"ValetClient(base_url={self.base_url!r})"

    # -- API calls -------------------------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        if self.api_key:
            return {"X-API-Key": self.api_key}
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        raise UploadError("Give a bearer token or an API key.", EXIT_AUTH, "missing_credentials")

    def _call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """An API request with retries on transport errors and transient statuses (honours Retry-After)."""
        for attempt in range(self.retries + 1):
            try:
                response = self.session.request(method, url, timeout=self.timeout, verify=self.verify, **kwargs)
            except requests.RequestException as exc:
                if (why := certificate_failure(exc)) is not None:  # no retry can fix a certificate
                    raise UploadError(f"The service's TLS certificate could not be verified ({why}); give the CA "
                                      "that signed it: ValetClient(verify=<CA file>), or REQUESTS_CA_BUNDLE for "
                                      "valet-upload.", EXIT_TRANSIENT, "certificate_unverified") from None
                if attempt == self.retries:
                    raise UploadError(f"Cannot reach {self.base_url}.", EXIT_TRANSIENT, "unreachable") from None
            else:
                if response.status_code not in _TRANSIENT or attempt == self.retries:
                    return response
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    self.sleep(min(float(retry_after), 30.0))
                    continue
            self.sleep(self.backoff * (2**attempt))
        raise AssertionError("unreachable")

    def grant(self, *, filename: str, content_type: str, size: int, profile: str | None = None,
              sha256: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"filename": filename, "contentType": content_type, "size": size}
        if profile:
            body["profile"] = profile
        if sha256:
            body["sha256"] = sha256
        response = self._call("POST", f"{self.base_url}/api/uploads", json=body, headers=self._auth())
        if response.status_code == 201:
            return response.json()  # type: ignore[no-any-return]
        problem = _problem(response)
        _raise_unless_refused(response, problem)
        raise UploadError(f"Grant refused: {problem['detail']}", EXIT_REJECTED, problem["code"])

    def renew(self, grant: dict[str, Any]) -> dict[str, Any]:
        """A fresh SAS for the same blob (``POST /api/uploads/{uploadId}/renew``); :class:`_RenewRefused`
        when the service says there is nothing to renew (complete, decided, window closed)."""
        response = self._call("POST", f"{self.base_url}/api/uploads/{quote(str(grant['uploadId']), safe='')}/renew",
                              json={"blobUri": grant["blobUri"]}, headers=self._auth())
        if response.status_code == 200:
            return response.json()  # type: ignore[no-any-return]
        _raise_unless_refused(response, _problem(response))
        raise _RenewRefused()

    def _fresh_sas(self, grant: dict[str, Any], *, refused: str = "") -> None:
        """Renew the grant's SAS in place when it expires within :data:`RENEW_BEFORE`, or when storage just
        refused the one ``refused`` names (one renewal at a time; parallel block uploads that wanted one
        too find it done). The grant's headers stay: the renewed SAS is for the same blob."""
        with self._renew_lock:
            if grant.get("signature") != refused and not _expired(grant, self.clock(), margin=RENEW_BEFORE):
                return
            fresh = self.renew(grant)
            grant.update(uploadUrl=fresh["uploadUrl"], signature=fresh["signature"], expiresOn=fresh["expiresOn"])
            self._renewals += 1

    def status(self, status_url: str) -> dict[str, Any]:
        response = self._call("GET", status_url, headers=self._auth())
        if response.status_code == 200:
            return response.json()  # type: ignore[no-any-return]
        problem = _problem(response)
        code = EXIT_AUTH if response.status_code in (401, 403) else EXIT_TRANSIENT
        raise UploadError(f"Status unavailable: {problem['detail']}", code, problem["code"])

    def cancel(self, grant: dict[str, Any]) -> None:
        """Give an unused grant back: its upload URL can no longer create the blob."""
        response = self._call("DELETE", grant["statusUrl"], headers=self._auth(), params={"blobUri": grant["blobUri"]})
        if response.status_code != 204:
            raise _refused(response, "Not cancelled")

    def download(self, status_url: str) -> dict[str, Any]:
        """A short-lived read URL for an accepted upload: ``{"downloadUrl", "expiresOn", ...}``."""
        response = self._call("GET", f"{status_url}/download", headers=self._auth())
        if response.status_code != 200:
            raise _refused(response, "No download URL")
        return response.json()  # type: ignore[no-any-return]

    def wait(self, status_url: str, *, timeout: float = 120.0, interval: float = 1.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            doc = self.status(status_url)
            if doc.get("status") not in UNDECIDED:  # "retrying": a decision attempt failed; the app tries again
                return doc
            if time.monotonic() >= deadline:
                raise UploadError("No decision yet; try the status URL later.", EXIT_TRANSIENT, "pending")
            self.sleep(interval)

    # -- uploading -------------------------------------------------------------------------------

    def upload(self, path: Path, *, content_type: str | None = None, profile: str | None = None,
               sha256: bool = False, mode: str = "auto", progress: ProgressFn | None = None,
               wait: bool = True, wait_timeout: float = 120.0, max_grants: int = 3) -> UploadResult:
        size = path.stat().st_size
        kind = content_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        digest = _sha256_file(path) if sha256 else None
        self._renewals = 0
        for grants in range(1, max_grants + 1):
            grant = self.grant(filename=path.name, content_type=kind, size=size, profile=profile, sha256=digest)
            try:
                used = self._put(grant, path, size, mode, progress)
            except _GrantExpired:
                continue  # the SAS ran out and could not be renewed: ask for a fresh grant
            result = UploadResult(grant["uploadId"], "pending", mode=used, grants=grants, renewals=self._renewals,
                                  status_url=grant["statusUrl"])
            if wait:
                doc = self.wait(grant["statusUrl"], timeout=wait_timeout)
                result.status, result.reason = str(doc.get("status")), doc.get("reason")
            return result
        raise UploadError(f"The upload URL expired: storage refused it (403) after every renewal and {max_grants} "
                          "grant(s); is this machine's clock right, or the connection very slow?", EXIT_TRANSIENT,
                          "grant_expired")

    def _put(self, grant: dict[str, Any], path: Path, size: int, mode: str, progress: ProgressFn | None) -> str:
        if mode == "blocks" or (mode == "auto" and size > 4 * BLOCK_BYTES):
            try:
                self._put_blocks(grant, path, size, progress)
                return "blocks"
            except _BlocksRefused:
                if mode == "blocks" or size > PUT_BLOB_LIMIT:
                    raise UploadError("The storage service refuses create-only block uploads "
                                      "(Azurite does; Azure allows them since 2026-04-06).", EXIT_REJECTED,
                                      "blocks_refused") from None
        if size > PUT_BLOB_LIMIT:
            raise UploadError("Files over 5,000 MiB need block uploads.", EXIT_REJECTED, "too_large_for_put_blob")
        self._put_blob(grant, path, size, progress)
        return "single"

    def _storage(self, method: str, url: str, grant: dict[str, Any], *, data: Any,
                 headers: dict[str, str]) -> requests.Response:
        """A request to storage with the grant's SAS, retried on transport errors and transient statuses.
        :class:`_GrantExpired` when storage does not accept the SAS (expired, by either clock)."""
        for attempt in range(self.retries + 1):
            body = data() if callable(data) else data
            try:
                response = self.session.request(method, url, data=body, headers=headers,
                                                timeout=max(self.timeout, 300), verify=self.storage_verify)
            except requests.RequestException as exc:
                if (why := certificate_failure(exc)) is not None:  # no retry can fix a certificate
                    raise UploadError(
                        f"Storage's TLS certificate could not be verified ({why}). For a local emulator, give its "
                        "CA: valet-upload --storage-ca FILE or VALET_STORAGE_CA_BUNDLE=FILE (valet dev's is "
                        ".valet/azurite/tls/cert.pem), or ValetClient(storage_verify=FILE).", EXIT_TRANSIENT,
                        "storage_certificate_unverified") from None
                if attempt == self.retries:
                    raise UploadError("Storage cannot be reached.", EXIT_TRANSIENT, "storage_unreachable") from None
                self.sleep(self.backoff * (2**attempt))
                continue
            finally:
                if isinstance(body, _FileBody):
                    body.close()
            if response.status_code == 403 and (_expired(grant, self.clock()) or sas_not_accepted(response)):
                raise _GrantExpired()
            if response.status_code not in _TRANSIENT:
                return response
            if attempt == self.retries:
                raise UploadError("Storage kept failing.", EXIT_TRANSIENT, f"storage_{response.status_code}")
            self.sleep(self.backoff * (2**attempt))
        raise AssertionError("unreachable")

    def _put_blob(self, grant: dict[str, Any], path: Path, size: int, progress: ProgressFn | None) -> None:
        def body() -> _FileBody:
            return _FileBody(path, size, progress)

        # Storage checks the SAS when the request starts: renew first if it is due, and once more if
        # storage finds it expired anyway (the clocks disagree, or the request waited).
        response = self._with_fresh_sas(grant, lambda: self._storage("PUT", grant["uploadUrl"], grant, data=body,
                                                                     headers=dict(grant["headers"])))
        if response.status_code == 403:
            # A retry after a lost response finds the blob already there (create-only): fine if we made it.
            if self.status(grant["statusUrl"]).get("status") in ("pending", "accepted", "quarantined"):
                return
        if response.status_code != 201:
            raise UploadError(f"Storage refused the upload ({response.status_code}).", EXIT_REJECTED,
                              response.headers.get("x-ms-error-code"))

    def _put_blocks(self, grant: dict[str, Any], path: Path, size: int, progress: ProgressFn | None) -> None:
        count = max(1, -(-size // BLOCK_BYTES))
        ids = [base64.b64encode(f"valet-{n:08d}".encode()).decode() for n in range(count)]
        done = [0]

        def put_block(n: int) -> None:
            start = n * BLOCK_BYTES
            length = min(BLOCK_BYTES, size - start)
            with path.open("rb") as f:
                f.seek(start)
                data = f.read(length)
            response = self._with_fresh_sas(grant, lambda: self._storage(
                "PUT", f"{grant['uploadUrl']}&comp=block&blockid={quote(ids[n], safe='')}", grant, data=data,
                headers={"x-ms-version": BLOCK_VERSION}))
            if response.status_code == 403:
                raise _BlocksRefused()
            if response.status_code != 201:
                raise UploadError(f"Storage refused a block ({response.status_code}).", EXIT_REJECTED)
            done[0] += length
            if progress:
                progress(done[0], size)

        put_block(0)  # the first block tells whether create-only blocks are allowed here
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(put_block, range(1, count)))
        block_list = "".join(f"<Latest>{i}</Latest>" for i in ids)
        headers = {k: v for k, v in grant["headers"].items() if k.lower() != "x-ms-blob-type"}
        response = self._with_fresh_sas(grant, lambda: self._storage(
            "PUT", f"{grant['uploadUrl']}&comp=blocklist", grant,
            data=f'<?xml version="1.0" encoding="utf-8"?><BlockList>{block_list}</BlockList>'.encode(),
            headers={**headers, "x-ms-version": BLOCK_VERSION},
        ))
        if response.status_code != 201:
            raise UploadError(f"Storage refused the block list ({response.status_code}).", EXIT_REJECTED)


    def _with_fresh_sas(self, grant: dict[str, Any], request: Callable[[], requests.Response]) -> requests.Response:
        """``request`` with a SAS that is not about to expire; once more after a renewal if storage did not
        accept it (expired by storage's clock). :class:`_GrantExpired` when it refuses the renewed one too,
        :class:`_RenewRefused` when the service has nothing to renew: then only a fresh grant helps."""
        self._fresh_sas(grant)
        try:
            return request()
        except _RenewRefused:
            raise
        except _GrantExpired:
            self._fresh_sas(grant, refused=str(grant.get("signature", "")))
            return request()


class _GrantExpired(Exception):
    pass


class _RenewRefused(_GrantExpired):
    """Nothing to renew (complete, decided, window closed): the upload needs a fresh grant."""


class _BlocksRefused(Exception):
    pass


def certificate_failure(exc: BaseException) -> str | None:
    """Why the peer's certificate failed verification (OpenSSL's words, e.g. "self-signed certificate"), when
    that is what ``exc`` comes from; ``None`` for every other transport error. Only the reason is kept:
    requests' own message carries the URL, and an upload URL carries its SAS."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending and len(seen) < 32:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return str(current.verify_message or "certificate verify failed")
        pending.extend([*current.args, current.__cause__, current.__context__, getattr(current, "reason", None)])
    return None


def sas_not_accepted(response: requests.Response) -> bool:
    """Storage's answer to a SAS it does not accept: expired, not yet valid or not signed right (Azure says
    ``AuthenticationFailed`` with the times, Azurite ``AuthorizationFailure``; both are a generic 403). A
    create-only SAS meeting an existing blob is ``AuthorizationPermissionMismatch``: not this."""
    return response.headers.get("x-ms-error-code") in ("AuthenticationFailed", "AuthorizationFailure")


def _expired(grant: dict[str, Any], now: datetime, margin: timedelta = timedelta(0)) -> bool:
    try:
        expires = datetime.strptime(str(grant["expiresOn"]), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (KeyError, ValueError):
        return False
    return now + margin >= expires


def _raise_unless_refused(response: requests.Response, problem: dict[str, str]) -> None:
    """Authentication (3) and transient (4) failures; what remains is the service refusing the request."""
    if response.status_code in (401, 403):
        raise UploadError(f"Not allowed: {problem['detail']}", EXIT_AUTH, problem["code"])
    if response.status_code in _TRANSIENT:
        raise UploadError(f"The service is unavailable: {problem['detail']}", EXIT_TRANSIENT, problem["code"])


def _refused(response: requests.Response, what: str) -> UploadError:
    """The error for a refused call: 3 for authentication, 1 for a state that forbids it (409), 4 else."""
    problem = _problem(response)
    code = {401: EXIT_AUTH, 403: EXIT_AUTH, 409: EXIT_REJECTED}.get(response.status_code, EXIT_TRANSIENT)
    return UploadError(f"{what}: {problem['detail']}", code, problem["code"])


def _problem(response: requests.Response) -> dict[str, str]:
    try:
        doc = response.json()
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    return {"code": str(doc.get("code", f"http_{response.status_code}")),
            "detail": str(doc.get("detail", f"HTTP {response.status_code}"))}


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


class _FileBody:
    """The file as a request body with a known length (storage needs Content-Length, not chunked
    encoding), reporting progress as it is read."""

    def __init__(self, path: Path, size: int, progress: ProgressFn | None) -> None:
        self._file = path.open("rb")
        self._size, self._sent, self._progress = size, 0, progress

    def __len__(self) -> int:
        return self._size

    def close(self) -> None:
        self._file.close()

    def read(self, n: int = -1) -> bytes:
        chunk = self._file.read(min(n if n > 0 else self._size, 1024 * 1024))
        if not chunk:
            self._file.close()
        self._sent += len(chunk)
        if self._progress and chunk:
            self._progress(self._sent, self._size)
        return chunk
