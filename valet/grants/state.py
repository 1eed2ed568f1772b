"""What storage holds at an upload's name, as far as renewing its SAS goes (see
:meth:`~valet.grants.issuer.GrantIssuer.renew`): the renewal's one storage request."""

from __future__ import annotations

from collections.abc import Callable

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from valet.errors import ServiceUnavailable

ABSENT, UPLOADED, DECIDED = "absent", "uploaded", "decided"
UploadState = Callable[[str], str]


class BlobUploadState:
    """:data:`UploadState` from storage: one Get Blob Properties on the uploads container (404: nothing
    committed yet, blocks may be staged; a tombstone: decided; anything else: uploaded, not yet decided)."""

    def __init__(self, blob_service: BlobServiceClient, container: str,
                 is_decided: Callable[[str, dict[str, str] | None], bool]) -> None:
        self._container = blob_service.get_container_client(container)
        self._is_decided = is_decided  # the validator's sealed-tombstone check: client metadata proves nothing

    def __call__(self, name: str) -> str:
        try:
            props = self._container.get_blob_client(name).get_blob_properties()
        except ResourceNotFoundError:
            return ABSENT
        except AzureError as exc:
            raise ServiceUnavailable("Storage is unavailable right now.", code="storage_unavailable") from exc
        return DECIDED if self._is_decided(name, props.metadata) else UPLOADED
