"""The attacker's bench: the same real Azurite, real grants and real PUTs as tests/integration, reused."""

from tests.integration.test_validation import grant, runtime  # noqa: F401 - fixtures shared with the attacks
