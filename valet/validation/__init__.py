"""Deciding every upload: accepted or quarantined, with a record; see :mod:`valet.validation.validator`."""
