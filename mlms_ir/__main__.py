"""``python -m mlms_ir``: the command line."""

import sys

from mlms_ir.cli import main

if __name__ == "__main__":
    sys.exit(main())
