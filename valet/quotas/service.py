"""What the rest of the app calls: quotas by profile name and caller, over the store.

A profile without a ``quota`` or ``tenantQuota`` never reaches the store (zero storage requests), and an
app whose profiles have none builds no Table client at all. A decision or cancel settles a grant's row only
when the grant says, in its signed blob name, that it stored one (``stored_row``): a plain grant's makes no
Table request whatever the settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from valet import telemetry
from valet.caller import Caller
from valet.errors import ServiceUnavailable
from valet.quotas.batches import BatchLedger, BatchRow
from valet.quotas.idempotency import IdempotencyStore
from valet.quotas.limits import ProfileQuota
from valet.quotas.rows import Account, GrantRow
from valet.quotas.rules import QuotaExceeded
from valet.quotas.settings import QuotaSettings
from valet.quotas.store import Outcome, QuotaStore, Reservation, SweepReport

if TYPE_CHECKING:  # the settings module imports this package's limits: no cycle at import time
    from valet.grants.naming import NameFacts
    from valet.settings import StorageSettings
    from valet.storage import RequestCounter


EVENT_GRACE = timedelta(seconds=30)  # a batch's completing transaction has this long to send its event


class BlobPresence:
    """``uploaded(blob)`` for the store: is there a blob at this name in the uploads container (an upload,
    or the tombstone of a decided one)? One Get Blob Properties; asked only for grants whose window closed."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    def __call__(self, blob: str) -> bool:
        try:
            self._container.get_blob_client(blob).get_blob_properties()
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise ServiceUnavailable("Storage is unavailable right now.", code="storage_unavailable") from exc
        return True


class Quotas:
    def __init__(self, profiles: Mapping[str, ProfileQuota], store: QuotaStore | None,
                 batch_events: Callable[[dict[str, Any]], None] | None = None) -> None:
        if store is None and any(q.enabled for q in profiles.values()):
            raise ValueError("profiles with quotas need a quota store")
        self._profiles = dict(profiles)
        self.store = store
        self.batch_events = batch_events  # puts one batch event on the decision queue
        # Grants whose name does not say whether they stored a row (signed before names said): settle rows of
        # profiles without a quota too (batch and idempotent grants store them) when a setting names the table.
        self.tracks_unmetered = False

    @classmethod
    def build(cls, profiles: Mapping[str, ProfileQuota], storage: StorageSettings, settings: QuotaSettings | None,
              credential: TokenCredential, *, counter: RequestCounter | None = None,
              uploaded: Callable[[str], bool] | None = None) -> Quotas:
        """The quotas of these profiles, over the quota table (also the store of batches and idempotency
        keys). Making the client sends nothing: a grant without quota, batch or key makes no request."""
        if settings is None:
            return cls({n: q for n, q in profiles.items() if not q.enabled}, None)
        tracks = settings.explicit
        from valet.storage import make_table_client

        table = make_table_client(storage, credential, settings.table_url, settings.table, counter)
        quotas = cls(profiles, QuotaStore(table, uploaded=uploaded))
        quotas.tracks_unmetered = tracks
        return quotas

    def profile(self, name: str) -> ProfileQuota:
        return self._profiles.get(name) or ProfileQuota(name)

    def enabled(self, profile: str) -> bool:
        return self.profile(profile).enabled

    def max_files_per_batch(self, profile: str) -> int:
        return self.profile(profile).max_files_per_batch

    def reserve(self, caller: Caller, profile: str, files: Sequence[Reservation], *, repeat: bool = False,
                batch: BatchRow | None = None, record: bool = False) -> None:
        """Reserve a grant's (or a batch's) files, or raise ``429 quota_exceeded``; no request without a
        quota, unless the grant rows are to be stored (``record``: batches and idempotent grants)."""
        quota = self.profile(profile)
        if not (quota.enabled or batch is not None or record):
            return
        if self.store is None:
            raise ServiceUnavailable("The quota store is not configured.", code="quota_store_unavailable")
        try:
            self.store.reserve(Account.of(caller), quota, files, repeat=repeat, batch=batch, record=record)
        except QuotaExceeded:
            telemetry.current().refusal("quota", QuotaExceeded.code)
            raise

    def document(self, caller: Caller, profiles: Iterable[str]) -> dict[str, Any]:
        """``GET /api/quota``: the ``quota`` object of every scope with limits, for the given profiles."""
        out: list[dict[str, Any]] = []
        for name in profiles:
            quota = self.profile(name)
            if quota.enabled and self.store is not None:
                out.extend(self.store.usage(Account.of(caller), quota))
        return {"quotas": out}

    def has_row(self, profile: str, stored_row: bool | None) -> bool:
        """Whether a decision or cancel of a grant must reach the store. ``stored_row`` is what the grant's
        verified name says (a quota reservation, a batch member, an idempotent grant); ``None`` (a grant
        signed before names said) falls back to what the grant could have stored: its profile has a quota,
        or a setting names the table (batches and idempotency keys)."""
        if self.store is None or not profile:
            return False
        if stored_row is not None:
            return stored_row
        return self.enabled(profile) or self.tracks_unmetered

    def decide(self, partition: str, profile: str, upload_id: str, outcome: Outcome, *,
               stored_row: bool | None = None) -> None:
        """An upload was decided: consume its reservation and record its status in its batch; a batch
        this completes gets its one event. ``partition`` is the blob name's ``<tenant>/<caller>``; no
        request for a grant without a row (:meth:`has_row`)."""
        if self.store is None or not self.has_row(profile, stored_row):
            return
        account = Account.from_partition(partition)
        _, completed = self.store.decide(account, profile, upload_id, outcome)
        for batch in completed:
            self._announce(account.partition_key(profile), batch)

    def _announce(self, pk: str, batch: BatchRow) -> None:
        if self.batch_events is None or self.store is None:
            return
        self.batch_events(batch.event_message())
        BatchLedger(self.store.table).event_sent(pk, batch)

    def settle(self, partition: str, profile: str, upload_id: str, *, consumed: bool,
               stored_row: bool | None = None) -> bool:
        """An upload was decided (``consumed``) or its grant cancelled; ``partition`` is the blob name's
        ``<tenant>/<caller>``. No request for a grant without a row (:meth:`has_row`)."""
        if self.store is None or not self.has_row(profile, stored_row):
            return False
        return self.store.settle(Account.from_partition(partition), profile, upload_id, consumed=consumed)

    def observe_staged(self, partition: str, profile: str, upload_id: str, staged: int, *,
                       stored_row: bool | None) -> bool:
        """The app saw ``staged`` bytes staged for a grant (``GET .../blocks``, the staged sweep): a grant
        of a profile with a quota holds max(declared, staged) bytes while its window is open. No request
        for a profile without a quota, nor for a grant whose name says it stored no row."""
        if self.store is None or stored_row is False or not self.enabled(profile):
            return False
        return self.store.observe_staged(Account.from_partition(partition), profile, upload_id, staged)

    def staged_observer(self) -> Callable[[NameFacts, int], None] | None:
        """What ``GET .../blocks`` and the staged sweep call with a granted name's facts and the bytes staged
        for it; ``None`` when no profile has a quota (they then ask nothing)."""
        if self.store is None or not any(q.enabled for q in self._profiles.values()):
            return None

        def observe(facts: NameFacts, staged: int) -> None:
            self.observe_staged(facts.partition, facts.profile, facts.upload_id, staged, stored_row=facts.stored_row)
        return observe

    def stored_grant(self, caller: Caller, upload_id: str) -> GrantRow | None:
        """This caller's stored grant row for ``upload_id``, whatever the profile (one range query)."""
        if self.store is None or not self.active:
            return None  # no grant can have a row: no request
        return BatchLedger(self.store.table).find_grant(Account.of(caller), upload_id)

    @property
    def active(self) -> bool:
        """Can the table hold anything: a profile has a quota, or a setting names the table?"""
        return self.store is not None and (self.tracks_unmetered or any(q.enabled for q in self._profiles.values()))

    def sweep(self, *, limit: int = 500) -> SweepReport:
        """Settle grants whose window closed, delete old rows, and send batch events still owed (no
        request when the table cannot hold anything)."""
        if self.store is None or not self.active:
            return SweepReport()
        report = self.store.sweep(limit=limit)
        for pk, batch in BatchLedger(self.store.table).owed(EVENT_GRACE, limit=limit):
            self._announce(pk, batch)
        report.deleted += IdempotencyStore(self.store.table).sweep(limit=limit)
        return report
