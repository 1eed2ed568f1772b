"""``python -m valet ...``: the ``valet`` command (:mod:`valet.local.cli`). Not deployed (``.funcignore``)."""

import sys

from valet.local.cli import main

sys.exit(main())
