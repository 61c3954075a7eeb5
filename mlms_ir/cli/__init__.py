"""The Fire command line: ``python -m mlms_ir VERB ...``.

Each verb is a plain function (in its own module) that parses, calls the library and renders.
Errors a user can cause print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from mlms_ir.errors import MlmsIrError

#: Flags that may be repeated on the command line; their values are joined with ';'.
REPEATABLE = ("--input-shape", "--input_shape")


def _join_repeated(argv: list[str]) -> list[str]:
    """Fire keeps only the last of repeated flags: gather ``--input-shape`` values into one."""
    values: list[str] = []
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        flag, eq, val = arg.partition("=")
        if flag in REPEATABLE:
            if eq:
                values.append(val)
            elif i + 1 < len(argv):
                values.append(argv[i + 1])
                i += 1
            else:
                out.append(arg)
        else:
            out.append(arg)
        i += 1
    if values:
        out.append("--input-shape=" + ";".join(values))
    return out


def commands() -> dict:
    from mlms_ir.cli.analyze import analyze, devices, ops, version
    from mlms_ir.cli.report import report
    from mlms_ir.cli.run import backends, diverge, profile, run
    from mlms_ir.cli.convert import convert
    from mlms_ir.cli.evaluate import Datasets, evaluate
    from mlms_ir.cli.runs import Runs, sweep
    from mlms_ir.cli.zoo import Zoo

    return {"analyze": analyze, "run": run, "profile": profile, "diverge": diverge, "evaluate": evaluate, "report": report,
            "runs": Runs(), "sweep": sweep, "zoo": Zoo(), "convert": convert, "datasets": Datasets(), "backends": backends,
            "devices": devices, "ops": ops, "version": version}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m mlms_ir`` and the ``mlms_ir`` script; returns the exit status."""
    import fire

    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=os.environ.get("MLMS_IR_LOG", "WARNING").upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        fire.Fire(commands(), command=_join_repeated(args), name="mlms_ir")
    except MlmsIrError as exc:
        from mlms_ir.report.text import printable

        print(f"mlms_ir: error: {printable(exc)}", file=sys.stderr)
        logging.getLogger(__name__).debug("details", exc_info=True)
        return exc.exit_code
    except fire.core.FireExit as exc:
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("mlms_ir: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return 0
