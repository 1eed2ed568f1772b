"""Storage clients and the app's identity.

In Azure the app signs in with its managed identity (``managedidentity``: a user-assigned identity when
``VALET_STORAGE_CLIENT_ID`` is set, else the system-assigned one) or with ``DefaultAzureCredential``
(``default``: developer sign-in, workload identity, ...). No account key or key-bearing connection
string exists on these paths.

Locally, ``emulator`` builds the unsigned bearer tokens Azurite accepts in ``--oauth basic`` mode. It is
refused for any endpoint that is not loopback, at settings time and again here.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jwt
from azure.core.credentials import AccessToken, TokenCredential
from azure.core.pipeline import PipelineRequest
from azure.storage.blob import BlobServiceClient, LinearRetry
from azure.storage.queue import QueueClient

if TYPE_CHECKING:
    from azure.data.tables import TableClient

from valet.errors import ConfigurationError
from valet.settings import StorageSettings, is_loopback_url

EMULATOR_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


class EmulatorCredential:
    """Tokens for Azurite's ``--oauth basic`` mode (it checks issuer, audience and time, not signature).

    Never use against real storage: construction fails for a non-loopback endpoint.
    """

    def __init__(self, endpoint: str, *, tenant_id: str = EMULATOR_TENANT) -> None:
        if not is_loopback_url(endpoint):
            raise ConfigurationError("the emulator credential only works with a loopback storage endpoint")
        self._tenant = tenant_id
        self._key = uuid.uuid4().bytes * 2  # random, never shared: Azurite does not verify signatures

    def __repr__(self) -> str:
        return "EmulatorCredential()"

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        now = int(time.time())
        expires = now + 3600
        token = jwt.encode(
            {
                "iss": f"https://sts.windows.net/{self._tenant}/",
                "aud": "https://storage.azure.com",
                "tid": self._tenant,
                "oid": "00000000-0000-0000-0000-00000000beef",
                "sub": "valet-emulator",
                "iat": now - 60,
                "nbf": now - 60,
                "exp": expires,
            },
            self._key,
            algorithm="HS256",
        )
        return AccessToken(token, expires)

    def close(self) -> None:
        pass


def make_credential(storage: StorageSettings) -> TokenCredential:
    if storage.credential == "emulator":
        return EmulatorCredential(storage.account_url)
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if storage.credential == "managedidentity":
        if storage.client_id:
            return ManagedIdentityCredential(client_id=storage.client_id)
        return ManagedIdentityCredential()
    if storage.client_id:
        return DefaultAzureCredential(managed_identity_client_id=storage.client_id)
    return DefaultAzureCredential()


class RequestCounter:
    """Counts the HTTP requests a client sends, retries included (a ``raw_request_hook``)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, request: PipelineRequest[Any]) -> None:
        with self._lock:
            self.count += 1


def environment_http(account_url: str, environ: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
    """The proxies (for this account's host, after ``no_proxy``) and the CA bundle the environment names,
    by the rules requests and urllib apply: ``<scheme>_proxy`` in either case, lower case winning;
    ``REQUESTS_CA_BUNDLE``, then ``CURL_CA_BUNDLE``.

    requests reads these on *every* request of a session that trusts the environment, scanning all of
    it (and stats ``~/.netrc``, whose credentials would replace the storage bearer token anyway): about a
    millisecond of CPU per storage request on a Functions host with its many app settings. The storage
    clients read them once, here, and send with a session that does not look again."""
    proxies: dict[str, str] = {}
    for lower in (False, True):
        for name, value in environ.items():
            if value and name.lower().endswith("_proxy") and (name == name.lower()) is lower:
                proxies[name[:-len("_proxy")].lower()] = value
    host = urlsplit(account_url).hostname or ""
    bypass = "no" in proxies and bool(urllib.request.proxy_bypass_environment(host, proxies))  # type: ignore[attr-defined]
    chosen = {} if bypass else {k: v for k, v in proxies.items() if k in ("http", "https", "all")}
    return chosen, environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE") or None


def _client_options(storage: StorageSettings, credential: TokenCredential,
                    counter: RequestCounter | None, url: str) -> dict[str, Any]:
    """Bounded timeouts and retries, the one identity, the emulator's CA: a storage outage costs seconds."""
    timeout = storage.timeout_seconds
    proxies, env_ca = environment_http(url, os.environ)  # once, when the client is made
    return {
        "use_env_settings": False,
        "proxies": proxies or None,
        "credential": credential,
        "connection_verify": storage.ca_bundle or env_ca or True,
        "retry_policy": LinearRetry(backoff=1, random_jitter_range=1, retry_total=2),
        "connection_timeout": min(timeout, 3.0),
        "read_timeout": timeout,
        "raw_request_hook": counter,
    }


def make_blob_service(
    storage: StorageSettings, credential: TokenCredential, counter: RequestCounter | None = None
) -> BlobServiceClient:
    """A service client with bounded timeouts and retries: a storage outage costs seconds, not minutes."""
    return BlobServiceClient(storage.account_url,
                             **_client_options(storage, credential, counter, storage.account_url))


def make_decision_queue(
    storage: StorageSettings, credential: TokenCredential, counter: RequestCounter | None = None
) -> QueueClient:
    """The decision-event queue, with the same identity, timeouts and retries as the blob client."""
    return QueueClient(storage.queue_url, storage.decision_queue,
                       **_client_options(storage, credential, counter, storage.queue_url))


def make_table_client(storage: StorageSettings, credential: TokenCredential, table_url: str, table: str,
                      counter: RequestCounter | None = None) -> TableClient:
    """One table of the uploads account (the quota store), with the same identity, timeouts and CA as the
    blob client. Its retries are the Tables SDK's own policy, bounded the same way (2 retries, about 1 s
    apart); a 409 or 412 is an answer, never retried here."""
    from azure.data.tables import TableClient

    options = _client_options(storage, credential, counter, table_url)
    options.pop("retry_policy")
    return TableClient(table_url, table, retry_total=2, retry_backoff_factor=1.0, retry_backoff_max=2, **options)
