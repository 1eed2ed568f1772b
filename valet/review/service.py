"""The review feature assembled: settings, the quarantine reader, the actions and the audit trail; and
the review routes' admission (:meth:`Review.admit`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import azure.functions as func
from azure.storage.blob import BlobServiceClient

from valet.audit import AuditTrail
from valet.caller import Admission, Caller
from valet.clock import utcnow
from valet.errors import Unauthenticated
from valet.grants.delegation import UserDelegationKeyCache
from valet.review import rules
from valet.review.actions import ReviewActions
from valet.review.quarantine import QuarantineReader
from valet.review.rules import ReviewSettings
from valet.settings import Settings
from valet.validation.events import DecisionEvents
from valet.validation.trusted import Sealer


@dataclass
class Review:
    settings: ReviewSettings
    reader: QuarantineReader
    actions: ReviewActions
    audit: AuditTrail
    authenticator: Admission

    @classmethod
    def build(cls, *, settings: Settings, blob_service: BlobServiceClient, key_cache: UserDelegationKeyCache,
              events: DecisionEvents | None, audit: AuditTrail, authenticator: Admission,
              clock: Callable[[], datetime] = utcnow) -> Review:
        storage = settings.storage
        reader = QuarantineReader(blob_service=blob_service, quarantine=storage.quarantine_container,
                                  account_url=storage.account_url, account_name=blob_service.account_name or "",
                                  keys=key_cache, read_ttl=settings.download_ttl,
                                  start_skew=settings.sas_start_skew, clock=clock)
        actions = ReviewActions(blob_service=blob_service, uploads=storage.uploads_container,
                                accepted=storage.accepted_container, quarantine=storage.quarantine_container,
                                sealer=Sealer(settings.grant_keys), events=events, clock=clock)
        return cls(settings.review, reader, actions, audit, authenticator)

    def admit(self, req: func.HttpRequest) -> Caller:
        """The review routes' admission: valid credentials and the review role, or ``404`` (the routes do
        not exist for anyone else; a failed authentication still counts against the client address)."""
        try:
            caller = self.authenticator.identify(req)
        except Unauthenticated:
            raise rules.hidden() from None
        rules.require_reviewer(caller, self.settings)
        return caller
