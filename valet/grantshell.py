"""``python -m valet.grantshell grant.json``: the command's old name, kept; the code is
:mod:`valet.local.grantshell`. Not deployed (``.funcignore``)."""

import sys

from valet.local.grantshell import main

if __name__ == "__main__":
    sys.exit(main())
