import sys

from valet.cli import main

sys.exit(main())
