"""The reference upload client (library, ``valet-upload`` and ``valet upload``).

It does what every client of the API should do: get a grant with a bearer token or an API key, upload the
file straight to storage with exactly the grant's ``uploadUrl`` and ``headers``, then poll ``statusUrl``
until the validator decided. Transient failures are retried with exponential backoff; an upload whose
SAS nears expiry renews it for the same blob (``POST /api/uploads/{uploadId}/renew``; staged blocks are
kept) and gets a fresh grant only when renewal is refused; large files go up as parallel blocks where the
service allows create-only blocks (Azure, service version 2026-04-06 and later), else as one Put Blob (up
to 5,000 MiB). A block upload given a journal folder resumes: run again after the process was killed, it
renews the SAS of the same upload, asks ``GET /api/uploads/{uploadId}/blocks`` (or, where the service has no
such route, its own journal) which blocks storage holds, and sends only the others
(docs/resumable-uploads.md).

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

from valet_client.journal import Journal

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
    profile: str | None = None  # the profile the grant was made under
    bytes_sent: int = 0  # request bodies sent to storage by this run (the file's bytes, once or more)
    resumed_blocks: int = 0  # blocks storage already held when this run resumed an upload

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
    _sent: int = field(default=0, repr=False)
    _sent_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

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
                if response.status_code not in _TRANSIENT or attempt == self.retries or _over_quota(response):
                    return response  # over a quota, waiting a few seconds changes nothing
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
        if _over_quota(response):
            quota = response.json().get("quota") or {}
            raise UploadError(f"Quota exceeded: {describe_quota(quota)}; try again in "
                              f"{response.headers.get('Retry-After', '?')} s", EXIT_TRANSIENT, problem["code"])
        _raise_unless_refused(response, problem)
        raise UploadError(f"Grant refused: {problem['detail']}", EXIT_REJECTED, problem["code"])

    def quota(self) -> list[dict[str, Any]]:
        """What remains of this caller's quotas (``GET /api/quota``); empty when the service has none."""
        response = self._call("GET", f"{self.base_url}/api/quota", headers=self._auth())
        if response.status_code == 404:
            return []  # a service from before quotas
        if response.status_code != 200:
            problem = _problem(response)
            _raise_unless_refused(response, problem)
            raise UploadError(f"Quota refused: {problem['detail']}", EXIT_REJECTED, problem["code"])
        quotas = response.json().get("quotas")
        return quotas if isinstance(quotas, list) else []

    def renew(self, grant: dict[str, Any]) -> dict[str, Any]:
        """A fresh SAS for the same blob (``POST /api/uploads/{uploadId}/renew``); :class:`_RenewRefused`
        when the service says there is nothing to renew (complete, decided, window closed)."""
        response = self._call("POST", f"{self.base_url}/api/uploads/{quote(str(grant['uploadId']), safe='')}/renew",
                              json={"blobUri": grant["blobUri"]}, headers=self._auth())
        if response.status_code == 200:
            return response.json()  # type: ignore[no-any-return]
        problem = _problem(response)
        _raise_unless_refused(response, problem)
        raise _RenewRefused(problem["code"])

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

    def blocks(self, grant: dict[str, Any]) -> dict[str, Any] | None:
        """What storage holds for the grant's blob (``GET /api/uploads/{uploadId}/blocks``):
        ``{"committed", "blocks": [{"id", "size"}], "expiresOn"}``, or ``None`` when the service cannot say
        (no such route on an older service, or busy): the caller falls back on its journal."""
        try:
            response = self._call("GET", f"{grant['statusUrl']}/blocks", headers=self._auth(),
                                  params={"blobUri": grant["blobUri"]})
        except UploadError:
            return None
        if response.status_code != 200:
            return None
        doc = response.json()
        return doc if isinstance(doc, dict) and isinstance(doc.get("blocks"), list) else None

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
               wait: bool = True, wait_timeout: float = 120.0, max_grants: int = 3,
               journal_dir: Path | None = None) -> UploadResult:
        """``journal_dir``: keep a resume journal there for a block upload (see :mod:`valet_client.journal`);
        an upload found in it is resumed instead of granted again."""
        size = path.stat().st_size
        kind = content_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self._renewals, self._sent, resumed = 0, 0, 0
        blocks = mode == "blocks" or (mode == "auto" and size > 4 * BLOCK_BYTES)
        journal = (Journal(journal_dir, service=self.base_url, path=path, content_type=kind, profile=profile,
                           sha256=sha256, block_bytes=BLOCK_BYTES) if journal_dir is not None and blocks else None)
        saved = journal.load() if journal is not None else None
        if saved is not None and journal is not None:
            try:
                outcome = self._resume(saved[0], saved[1], journal, path, size, progress)
            except (_GrantExpired, _BlocksRefused):  # the window closed meanwhile, or blocks are refused here
                journal.remove()
                outcome = None
            if outcome is not None:
                grant, resumed = outcome
                return self._finish(grant, "blocks", 0, wait, wait_timeout, resumed)
        digest = _sha256_file(path) if sha256 else None
        for grants in range(1, max_grants + 1):
            grant = self.grant(filename=path.name, content_type=kind, size=size, profile=profile, sha256=digest)
            if journal is not None:
                journal.start(grant)
            try:
                used = self._put(grant, path, size, mode, progress, journal)
            except _GrantExpired:
                continue  # the SAS ran out and could not be renewed: ask for a fresh grant
            if journal is not None:
                journal.remove()
            return self._finish(grant, used, grants, wait, wait_timeout, resumed)
        raise UploadError(f"The upload URL expired: storage refused it (403) after every renewal and {max_grants} "
                          "grant(s); is this machine's clock right, or the connection very slow?", EXIT_TRANSIENT,
                          "grant_expired")

    def _resume(self, grant: dict[str, Any], confirmed: set[int], journal: Journal, path: Path, size: int,
                progress: ProgressFn | None) -> tuple[dict[str, Any], int] | None:
        """Carry on with a journaled upload: a fresh SAS for the same blob, then only the blocks storage
        lacks. ``(grant, blocks already stored)``, or ``None`` when it cannot go on (window closed, grant
        unknown): then the upload starts over with a new grant."""
        try:
            fresh = self.renew(grant)
        except _RenewRefused as refused:
            if refused.code in ("upload_complete", "upload_decided"):  # committed before the process died
                journal.remove()
                return grant, -(-size // BLOCK_BYTES)
            journal.remove()
            return None
        grant.update(uploadUrl=fresh["uploadUrl"], signature=fresh["signature"], expiresOn=fresh["expiresOn"])
        stored = self._stored(grant, size)
        if stored is None:  # the service cannot list blocks: trust what storage confirmed to us
            stored = confirmed
        elif stored == COMMITTED:
            journal.remove()
            return grant, -(-size // BLOCK_BYTES)
        self._put_blocks(grant, path, size, progress, skip=stored, journal=journal)
        journal.remove()
        return grant, len(stored)

    def _stored(self, grant: dict[str, Any], size: int) -> set[int] | None:
        """The blocks of this file that storage holds with the right size (by the ids of :func:`block_id`),
        :data:`COMMITTED`, or ``None`` when the service cannot say."""
        doc = self.blocks(grant)
        if doc is None:
            return None
        if doc.get("committed"):
            return COMMITTED
        count = -(-size // BLOCK_BYTES)
        wanted = {block_id(n): (n, min(BLOCK_BYTES, size - n * BLOCK_BYTES)) for n in range(count)}
        held = set()
        for block in doc["blocks"]:
            n, length = wanted.get(str(block.get("id")), (-1, -1))
            if n >= 0 and block.get("size") == length:
                held.add(n)
        return held

    def _finish(self, grant: dict[str, Any], used: str, grants: int, wait: bool, wait_timeout: float,
                resumed: int) -> UploadResult:
        result = UploadResult(grant["uploadId"], "pending", mode=used, grants=grants, renewals=self._renewals,
                              status_url=grant["statusUrl"], bytes_sent=self._sent, resumed_blocks=resumed,
                              profile=grant.get("profile"))
        if wait:
            doc = self.wait(grant["statusUrl"], timeout=wait_timeout)
            result.status, result.reason = str(doc.get("status")), doc.get("reason")
        return result

    def _put(self, grant: dict[str, Any], path: Path, size: int, mode: str, progress: ProgressFn | None,
             journal: Journal | None = None) -> str:
        if mode == "blocks" or (mode == "auto" and size > 4 * BLOCK_BYTES):
            try:
                self._put_blocks(grant, path, size, progress, journal=journal)
                return "blocks"
            except _BlocksRefused:
                if journal is not None:
                    journal.remove()
                if mode == "blocks" or size > PUT_BLOB_LIMIT:
                    raise UploadError("The storage service refuses create-only block uploads (Azurite as "
                                      "published does; Azure allows them since 2026-04-06).", EXIT_REJECTED,
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
            with self._sent_lock:
                self._sent += len(body)  # counted when sent, whether or not storage answers
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

    def _put_blocks(self, grant: dict[str, Any], path: Path, size: int, progress: ProgressFn | None, *,
                    skip: set[int] | frozenset[int] = frozenset(), journal: Journal | None = None) -> None:
        """Stage the file's blocks that are not in ``skip`` (fixed :data:`BLOCK_BYTES`, ids from
        :func:`block_id`), four at a time, each confirmed one noted in ``journal``; then commit them all."""
        count = max(1, -(-size // BLOCK_BYTES))
        ids = [block_id(n) for n in range(count)]
        lock = threading.Lock()
        done = [sum(min(BLOCK_BYTES, size - n * BLOCK_BYTES) for n in skip if n < count)]
        if progress:
            progress(done[0], size)  # a resumed upload starts where storage is

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
            if journal is not None:
                journal.confirmed(n)
            with lock:
                done[0] += length
                sent = done[0]
            if progress:
                progress(sent, size)

        missing = [n for n in range(count) if n not in skip]
        if missing:
            put_block(missing[0])  # the first block tells whether create-only blocks are allowed here
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(put_block, missing[1:]))
        self._commit(grant, ids)

    def _commit(self, grant: dict[str, Any], ids: list[str]) -> None:
        """Put Block List with the grant's headers. A retried commit whose first try did commit (the answer
        was lost) meets ``UnauthorizedBlobOverwrite``: create never overwrites. Then the blob is there, and
        ``/blocks`` (or the status route) says whether it is ours."""
        block_list = "".join(f"<Latest>{i}</Latest>" for i in ids)
        headers = {k: v for k, v in grant["headers"].items() if k.lower() != "x-ms-blob-type"}
        response = self._with_fresh_sas(grant, lambda: self._storage(
            "PUT", f"{grant['uploadUrl']}&comp=blocklist", grant,
            data=f'<?xml version="1.0" encoding="utf-8"?><BlockList>{block_list}</BlockList>'.encode(),
            headers={**headers, "x-ms-version": BLOCK_VERSION},
        ))
        if response.status_code == 201:
            return
        if response.status_code == 403:
            doc = self.blocks(grant)
            if doc is not None and doc.get("committed"):
                return
            if doc is None and self.status(grant["statusUrl"]).get("status") in ("pending", "accepted", "quarantined"):
                return
        raise UploadError(f"Storage refused the block list ({response.status_code}).", EXIT_REJECTED,
                          response.headers.get("x-ms-error-code"))

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

    def __init__(self, code: str = "") -> None:
        super().__init__(code)
        self.code = code


class _BlocksRefused(Exception):
    pass


COMMITTED: set[int] = {-1}  # _stored's answer for a blob that is already committed


def block_id(n: int) -> str:
    """Block ``n``'s id: base64 of ``valet-`` and eight digits, so every id has the same length (storage
    requires it) and a resumed run names the same block the same way."""
    return base64.b64encode(f"valet-{n:08d}".encode()).decode()


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


def _over_quota(response: requests.Response) -> bool:
    if response.status_code != 429:
        return False
    return _problem(response).get("code") == "quota_exceeded"


def describe_quota(quota: dict[str, Any]) -> str:
    """``images (caller): 196 files, 104,850,432 bytes today, 0 pending`` from a ``quota`` object."""
    left = quota.get("remaining") or {}
    parts = []
    if "filesPerDay" in left:
        parts.append(f"{left['filesPerDay']:,} files")
    if "bytesPerDay" in left:
        parts.append(f"{left['bytesPerDay']:,} bytes")
    text = " and ".join(parts) + " left today" if parts else ""
    if "pendingFiles" in left:
        text += (", " if text else "") + f"{left['pendingFiles']:,} more pending"
    return f"{quota.get('profile', '?')} ({quota.get('scope', '?')}): {text or 'no limit'}"


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
