"""``python -m mlms_ir``: the command line."""

import sys

from mlms_ir.cli import main

if __name__ == "__main__":
    from mlms_ir.ir import gc_pause

    gc_pause.freeze_at_exit = True  # one command, then the process ends: no collection of its heap
    sys.exit(main())
