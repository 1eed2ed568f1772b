"""Per-caller and per-tenant upload quotas, exact across instances (Azure Table Storage).

:mod:`limits` reads what profiles configure; :mod:`rules` is the pure accounting (reserve, consume,
release, what remains, ``Retry-After``, the ``quota`` problem member); :mod:`rows` lays the state out in
one partition per tenant and profile; :mod:`store` is the thin Table adapter (one entity-group transaction
per grant when uncontended); :mod:`memory` remembers refusals in-process.
"""

from valet.quotas.limits import Limits, ProfileQuota, parse_quotas
from valet.quotas.memory import RefusalMemory
from valet.quotas.rows import Account, GrantRow
from valet.quotas.rules import Ask, Counter, QuotaExceeded
from valet.quotas.settings import QuotaSettings, table_url_for
from valet.quotas.store import QuotaStore, Reservation, SweepReport

__all__ = [
    "Account",
    "Ask",
    "Counter",
    "GrantRow",
    "Limits",
    "ProfileQuota",
    "QuotaExceeded",
    "QuotaSettings",
    "QuotaStore",
    "RefusalMemory",
    "Reservation",
    "SweepReport",
    "parse_quotas",
    "table_url_for",
]
