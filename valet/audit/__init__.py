"""The audit trail: one append-only record per action, in an append-blob container nobody can rewrite.

``AuditTrail.record`` (buffered, for the grant side) and ``AuditTrail.write`` (appended at once, for
decisions and review actions) are the one API; ``AuditReader`` reads it back (``valet audit``,
``GET /api/review/audit``).
"""

from valet.audit.records import Action, Actor, AuditRecord
from valet.audit.settings import AuditSettings
from valet.audit.store import AppendStore, AuditReader, QueryResult
from valet.audit.trail import AuditTrail, AuditUnavailable

__all__ = ["Action", "Actor", "AppendStore", "AuditReader", "AuditRecord", "AuditSettings", "AuditTrail",
           "AuditUnavailable", "QueryResult"]
