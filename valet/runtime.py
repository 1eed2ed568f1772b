"""Composition root: settings in, ready-to-use services out. Built once per process at start-up."""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from azure.core.credentials import TokenCredential
from azure.storage.blob import BlobServiceClient

from valet.audit import AuditTrail
from valet.auth import Authenticator, BlobKeyStore
from valet.caller import Admission
from valet.errors import ConfigurationError
from valet.grants.blocks import BlockLister, BlockReader
from valet.grants.cancel import Canceller
from valet.grants.delegation import UserDelegationKeyCache
from valet.grants.downloads import DownloadIssuer
from valet.grants.issuer import GrantIssuer
from valet.grants.multi import GrantBook
from valet.grants.state import BlobUploadState, UploadState
from valet.quotas.service import BlobPresence, Quotas
from valet.review.service import Review
from valet.settings import NO_QUEUE, Settings
from valet.storage import RequestCounter, make_blob_service, make_credential, make_decision_queue
from valet.telemetry.setup import install_from_env
from valet.validation.events import QueueEvents
from valet.validation.service import Validation

log = logging.getLogger("valet.runtime")


@dataclass
class Runtime:
    settings: Settings
    blob_service: BlobServiceClient
    key_cache: UserDelegationKeyCache
    grants: GrantIssuer
    authenticator: Admission
    storage_requests: RequestCounter
    validation: Validation
    downloads: DownloadIssuer
    cancels: Canceller
    upload_state: UploadState  # what storage holds at a granted name (renewals)
    quotas: Quotas
    table_requests: RequestCounter  # the quota table's requests (none for grants without quota, batch or key)
    book: GrantBook  # batches and idempotent grants
    blocks: BlockLister  # the blocks storage holds for a granted blob (resuming)
    audit: AuditTrail  # the audit trail (valet.audit): its own storage client, never the grant path's
    review: Review  # quarantine review (valet.review)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        authenticator: Admission | None = None,
        credential: TokenCredential | None = None,
    ) -> Runtime:
        storage = settings.storage
        counter = RequestCounter()
        credential = credential or make_credential(storage)
        blob_service = make_blob_service(storage, credential, counter)
        table_counter = RequestCounter()
        quotas = Quotas.build(settings.quotas, storage, settings.quota_store, credential, counter=table_counter,
                              uploaded=BlobPresence(blob_service.get_container_client(storage.uploads_container)))
        key_cache = UserDelegationKeyCache(
            blob_service,
            lifetime=settings.delegation_key_lifetime,
            refresh_before=settings.delegation_key_refresh_before,
            wait_timeout=storage.timeout_seconds * 3,
        )
        grants = GrantIssuer(
            account_url=storage.account_url,
            account_name=blob_service.account_name or "",
            container=storage.uploads_container,
            keys=key_cache,
            signer=settings.grant_keys,
            policy=settings.policy,
            sas_ttl=settings.sas_ttl,
            sas_start_skew=settings.sas_start_skew,
            upload_window=settings.upload_window,
            quotas=quotas,
        )
        if authenticator is None:
            keystore = None
            if settings.auth.apikey_pepper is not None:
                keystore = BlobKeyStore(blob_service.get_container_client(settings.auth.apikey_container))
            authenticator = Authenticator(settings.auth, keystore)
        events = None
        if storage.decision_queue != NO_QUEUE:
            events = QueueEvents(make_decision_queue(storage, credential, counter))
        quotas.batch_events = events.send_message if events is not None else None
        # The audit trail's appends go through a client of their own: the grant path's request count (and
        # its zero storage requests per grant) never includes the background flusher's appends.
        audit = AuditTrail.from_settings(settings.audit, make_blob_service(storage, credential))
        validation = Validation.from_settings(settings, blob_service, events, quotas, audit)
        downloads = DownloadIssuer(
            blob_service=blob_service,
            account_url=storage.account_url,
            account_name=blob_service.account_name or "",
            accepted=storage.accepted_container,
            keys=key_cache,
            status=validation.status,
            ttl=settings.download_ttl,
            start_skew=settings.sas_start_skew,
        )
        cancels = Canceller(grants=grants, occupy=validation.validator.cancel,
                            tombstone_grace=settings.validation.tombstone_grace, quotas=quotas)
        upload_state = BlobUploadState(blob_service, storage.uploads_container, validation.validator.is_tombstone)
        blocks = BlockLister(grants, BlockReader(blob_service, storage.uploads_container), quotas.staged_observer())
        review = Review.build(settings=settings, blob_service=blob_service, key_cache=key_cache,
                              events=events, audit=audit, authenticator=authenticator)
        return cls(settings, blob_service, key_cache, grants, authenticator, counter, validation, downloads,
                   cancels, upload_state, quotas, table_counter, GrantBook(grants, settings.policy, quotas), blocks,
                   audit, review)

    def warm_up(self) -> None:
        """Fetch the first user delegation key in the background, so the first grant need not wait."""
        threading.Thread(target=self.key_cache.prefetch, name="valet-warm-up", daemon=True).start()


class RuntimeHolder:
    """Holds the runtime, or the configuration error that prevented it (reported on every request)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._runtime: Runtime | None = None
        self._error: ConfigurationError | None = None
        env = os.environ if environ is None else environ
        try:
            install_from_env(env)  # telemetry first: the runtime's clients record through it
            self._runtime = Runtime.from_settings(Settings.from_env(env))
        except ConfigurationError as error:
            log.error("valet is not configured: %s", error.detail)
            self._error = error
        else:
            self._runtime.warm_up()

    @property
    def loaded(self) -> Runtime | None:
        """The runtime if the configuration loaded, else ``None``; never raises (for the health route)."""
        return self._runtime

    def __call__(self) -> Runtime:
        if self._runtime is None:
            raise ConfigurationError("The service is misconfigured; see the application log.")
        return self._runtime


def settle_heap() -> None:
    """Take what start-up built out of the cyclic garbage collector's rounds (call it once the app is
    loaded): modules, the SDKs' classes, the runtime and its clients live as long as the process, yet every
    full collection walks them again. With telemetry on, the spans waiting for their exporter survive the
    young generations and trigger full collections; over a heap of about 100,000 start-up objects each one
    pauses the process for tens of milliseconds, frozen well under one (``bench/grants.py --telemetry``,
    docs/telemetry.md, Cost). :func:`gc.freeze` moves the objects alive now into a generation the collector
    never walks; reference counting still frees them. What was garbage is collected first, so nothing dead
    is kept."""
    gc.collect()
    gc.freeze()
