"""``valet keys``: the API key tool (:mod:`valet.auth.keytool`) wired to the app's key store.

Settings come from the environment over ``local.settings.json`` (as Core Tools does); in Azure, run it
with the app settings and an identity that may write the key container.
"""

from __future__ import annotations

from collections.abc import Sequence

from valet.auth import AuthSettings, BlobKeyStore, KeyStore
from valet.auth.keytool import main as keytool
from valet.local.localsettings import effective_environment
from valet.settings import Settings
from valet.storage import make_blob_service, make_credential


def main(argv: Sequence[str] | None = None) -> int:
    environ = effective_environment()

    def store_factory(auth: AuthSettings) -> KeyStore:
        settings = Settings.from_env(environ)
        service = make_blob_service(settings.storage, make_credential(settings.storage))
        return BlobKeyStore(service.get_container_client(auth.apikey_container))

    return keytool(argv, store_factory=store_factory, environ=environ)
