"""The review feature assembled: settings, the quarantine reader, the actions and the audit trail."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from azure.storage.blob import BlobServiceClient

from valet.audit import AuditTrail
from valet.caller import Authenticator
from valet.clock import utcnow
from valet.delegation import UserDelegationKeyCache
from valet.grant_token import GrantKeyRing
from valet.review.actions import ReviewActions
from valet.review.quarantine import QuarantineReader
from valet.review.rules import ReviewSettings
from valet.validation.events import DecisionEvents
from valet.validation.trusted import Sealer


@dataclass
class Review:
    settings: ReviewSettings
    reader: QuarantineReader
    actions: ReviewActions
    audit: AuditTrail
    authenticator: Authenticator

    @classmethod
    def build(cls, *, environ: Mapping[str, str], blob_service: BlobServiceClient, account_url: str,
              uploads: str, accepted: str, quarantine: str, grant_keys: GrantKeyRing,
              key_cache: UserDelegationKeyCache, read_ttl: timedelta, start_skew: timedelta,
              events: DecisionEvents | None, audit: AuditTrail, authenticator: Authenticator,
              clock: Callable[[], datetime] = utcnow, step: Callable[[str], None] = lambda _: None) -> Review:
        reader = QuarantineReader(blob_service=blob_service, quarantine=quarantine, account_url=account_url,
                                  account_name=blob_service.account_name or "", keys=key_cache,
                                  read_ttl=read_ttl, start_skew=start_skew, clock=clock)
        actions = ReviewActions(blob_service=blob_service, uploads=uploads, accepted=accepted,
                                quarantine=quarantine, sealer=Sealer(grant_keys), events=events, clock=clock,
                                step=step)
        return cls(ReviewSettings.from_env(environ), reader, actions, audit, authenticator)
