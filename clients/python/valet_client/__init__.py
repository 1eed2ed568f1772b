"""valet-client: the reference client of a valet service (grant, upload straight to storage, wait for the
validator's decision), and its ``valet-upload`` command. Depends on ``requests`` and the standard library."""

from valet_client.client import (
    EXIT_ACCEPTED,
    EXIT_AUTH,
    EXIT_REJECTED,
    EXIT_TRANSIENT,
    EXIT_USAGE,
    ProgressFn,
    UploadError,
    UploadResult,
    ValetClient,
)

__version__ = "0.1.0"

__all__ = [
    "EXIT_ACCEPTED",
    "EXIT_AUTH",
    "EXIT_REJECTED",
    "EXIT_TRANSIENT",
    "EXIT_USAGE",
    "ProgressFn",
    "UploadError",
    "UploadResult",
    "ValetClient",
    "__version__",
]
