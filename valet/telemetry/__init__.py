"""OpenTelemetry metrics and traces for valet: the instruments (:mod:`.instruments`), one trace per upload
(:mod:`.traces`) and the exporters chosen from the environment (:mod:`.setup`). See docs/telemetry.md."""

from valet.telemetry.instruments import INSTRUMENTS, Telemetry, current, install, note_grant

__all__ = ["INSTRUMENTS", "Telemetry", "current", "install", "note_grant"]
