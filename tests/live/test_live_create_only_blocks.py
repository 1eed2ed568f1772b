"""The create-only block rules of tests/support/blockrules.py against real Azure Storage (``live_azure``;
skipped unless VALET_LIVE_STORAGE_URL and VALET_LIVE_CONTAINER name an account, see test_live_azure.py).
The same checks run on the patched Azurite in tests/integration/test_create_only_blocks.py."""

from __future__ import annotations

import os

import pytest

from tests.live.test_live_azure import grant, runtime  # noqa: F401  (the live-account fixture)
from tests.support import blockrules
from valet.runtime import Runtime

pytestmark = pytest.mark.live_azure

DATA = b"\x89PNG\r\n\x1a\n" + os.urandom(4096)


def rig(runtime: Runtime) -> blockrules.Rig:  # noqa: F811
    return blockrules.rig_for(runtime, grant(runtime), True)


def test_put_block_with_create_only_sas_is_allowed(runtime: Runtime) -> None:  # noqa: F811
    blockrules.put_block_with_create_only(rig(runtime), DATA)


def test_put_block_list_with_create_only_sas_creates_a_new_blob(runtime: Runtime) -> None:  # noqa: F811
    blockrules.put_block_list_creating_a_new_blob(rig(runtime), [DATA[:100], DATA[100:]])


def test_put_block_list_over_an_existing_blob_is_unauthorized_blob_overwrite(runtime: Runtime) -> None:  # noqa: F811
    blockrules.put_block_list_over_an_existing_blob_is_refused(rig(runtime), DATA, DATA[::-1])


def test_other_permissions_authorize_blocks_as_before(runtime: Runtime) -> None:  # noqa: F811
    blockrules.other_permissions_are_unchanged(rig(runtime), DATA)


def test_a_create_only_sas_still_cannot_read(runtime: Runtime) -> None:  # noqa: F811
    blockrules.reading_stays_refused(rig(runtime), DATA)


def test_staged_never_committed_blocks_are_discarded_after_the_window(runtime: Runtime) -> None:  # noqa: F811
    """On Azure the listing of an uncommitted blob (size 0) is what the discard relies on; pin it there."""
    from datetime import timedelta

    from azure.core.exceptions import ResourceNotFoundError

    from valet.grants.naming import parse_granted_name
    from valet.validation.staged import StagedDiscard

    r = rig(runtime)
    assert r.put_block(r.url, 0, DATA).status_code == 201
    facts = parse_granted_name(r.owner.blob_name)
    assert facts is not None
    later = facts.deadline + timedelta(minutes=10)
    discard = StagedDiscard(blob_service=runtime.blob_service, uploads=runtime.settings.storage.uploads_container,
                            is_decided=runtime.validation.validator.is_tombstone, grace=timedelta(minutes=5),
                            clock=lambda: later, max_pages=50)
    assert r.owner.blob_name in discard.run().names
    with pytest.raises(ResourceNotFoundError):
        r.owner.get_block_list("all")
