"""Small in-memory stand-ins for the Protocols valet depends on (never for the Azure SDK)."""

from __future__ import annotations

from valet.caller import Caller

ALICE = Caller(
    kind="bearer",
    issuer="https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/v2.0",
    subject="aaaaaaaa-0000-0000-0000-000000000001",
    tenant="11111111-1111-1111-1111-111111111111",
    roles=frozenset({"Uploads.Write", "Uploads.Archives", "Uploads.Large"}),  # every built-in profile
)


class FixedCaller:
    """An authenticator that always answers the same caller (for tests of the grant path itself)."""

    def __init__(self, caller: Caller = ALICE) -> None:
        self.caller = caller

    def authenticate(self, request: object) -> Caller:
        return self.caller

    def admit(self, request: object) -> Caller:
        return self.caller

    def admit_read(self, request: object) -> Caller:
        return self.caller

    def identify(self, request: object) -> Caller:
        return self.caller

    def client_address(self, request: object) -> str:
        return "127.0.0.1"
