"""The one settings reader: typed reads of one settings mapping, shared by the app's settings
(:mod:`valet.settings`) and the authentication settings (:mod:`valet.auth.settings`).

Every error is a :class:`~valet.errors.ConfigurationError` that names the setting, never its value (which
may be a secret). An unset or blank setting takes its default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from valet.errors import ConfigurationError

# Blob container and queue names: 3-63 lower-case letters, digits and single hyphens, starting and ending
# with a letter or digit.
_STORAGE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}


class EnvReader:
    """Typed reads of one settings mapping; every error names the setting, never the value."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def optional(self, name: str) -> str | None:
        value = self.environ.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str = "") -> str:
        """The raw value, stripped; ``default`` when unset."""
        return self.environ.get(name, default).strip()

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            raise ConfigurationError(f"{name} is required")
        return value

    def url(self, name: str) -> str:
        value = self.required(name).rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
            raise ConfigurationError(f"{name} must be an absolute http(s) URL without query or fragment")
        return value

    def optional_url(self, name: str) -> str | None:
        return self.url(name) if self.optional(name) else None

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = (self.optional(name) or default).lower()
        if value not in choices:
            raise ConfigurationError(f"{name} must be one of: {', '.join(choices)}")
        return value

    def flag(self, name: str) -> bool:
        """A true/false setting (1/0, true/false, yes/no, on/off; unset is false)."""
        raw = self.environ.get(name, "").strip().lower()
        if raw in _FALSE:
            return False
        if raw in _TRUE:
            return True
        raise ConfigurationError(f"{name} must be true or false")

    def number(self, name: str, default: float, low: float, high: float, *, integer: bool = False) -> float:
        """A number in ``[low, high]``; ``integer``: written as a whole number (no point, no exponent)."""
        raw = self.optional(name)
        if raw is None:
            return float(default)
        try:
            value = float(int(raw)) if integer else float(raw)
        except ValueError:
            raise ConfigurationError(f"{name} must be a number") from None
        if not low <= value <= high:
            raise ConfigurationError(f"{name} must be between {low:g} and {high:g}")
        return value

    def existing_file(self, name: str) -> str | None:
        value = self.optional(name)
        if value is not None and not Path(value).is_file():
            raise ConfigurationError(f"{name} must name an existing file")
        return value

    def queue(self, name: str, default: str) -> str:
        value = self.optional(name) or default
        if not _STORAGE_NAME.fullmatch(value):
            raise ConfigurationError(f"{name} must be a valid queue name (3-63 lower-case letters, digits, -)")
        return value

    def container(self, name: str, default: str) -> str:
        value = self.optional(name) or default
        if not _STORAGE_NAME.fullmatch(value):
            raise ConfigurationError(f"{name} must be a valid container name (3-63 lower-case letters, digits, -)")
        return value
