"""The Fire command line: ``python -m mlms_ir VERB ...``.

Each verb is a plain function (in its own module) that parses, calls the library and renders.
Errors a user can cause print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from mlms_ir.errors import MlmsIrError, UsageError

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


def _take_max_memory(argv: list[str]) -> list[str]:
    """``--max-memory SIZE`` (``8G``, ``512M``, bytes), a flag of every verb: the memory budget
    that declared sizes are checked against and that guards ONNX's inference
    (``$MLMS_IR_MAX_MEMORY``, which it sets for this process and its children)."""
    from mlms_ir.ir.guard import parse_bytes

    out: list[str] = []
    i = 0
    while i < len(argv):
        flag, eq, val = argv[i].partition("=")
        if flag in ("--max-memory", "--max_memory"):
            if not eq:
                if i + 1 >= len(argv):
                    raise MlmsIrError("--max-memory needs a size, such as 8G or 512M")
                val = argv[i + 1]
                i += 1
            try:
                os.environ["MLMS_IR_MAX_MEMORY"] = str(parse_bytes(val))
            except (ValueError, IndexError):
                raise MlmsIrError(f"--max-memory takes a size such as 8G, 512M or a number of bytes, not '{val}'") from None
        else:
            out.append(argv[i])
        i += 1
    return out


def _take_quiet(argv: list[str]) -> list[str]:
    """``-q``/``--quiet``, a flag of every verb: no progress bars."""
    from mlms_ir import progress

    out = [a for a in argv if a not in ("-q", "--quiet")]
    progress.quiet = len(out) != len(argv)
    return out


#: The module of each verb, in the order help lists them: a command imports only its own
#: (``analyze`` never imports the backends' or the zoo's CLI modules); help and unknown words
#: import them all. ``runs``, ``zoo`` and ``datasets`` are classes of subcommands.
VERB_MODULES = {
    "analyze": "analyze", "run": "run", "profile": "run", "diverge": "run", "evaluate": "evaluate", "report": "report",
    "runs": "runs", "sweep": "runs", "zoo": "zoo", "convert": "convert", "datasets": "evaluate", "backends": "run",
    "devices": "analyze", "ops": "analyze", "version": "analyze",
}
_CLASSES = {"runs": "Runs", "zoo": "Zoo", "datasets": "Datasets"}


def commands(verb: str | None = None) -> dict:
    """Every verb by name, or only ``verb`` (imported alone) when it is one."""
    import importlib

    table = {}
    for name in [verb] if verb in VERB_MODULES else VERB_MODULES:
        target = getattr(importlib.import_module(f"mlms_ir.cli.{VERB_MODULES[name]}"), _CLASSES.get(name, name))
        table[name] = target() if isinstance(target, type) else target
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m mlms_ir`` and the ``mlms_ir`` script; returns the exit status."""
    import fire

    from mlms_ir import progress
    from mlms_ir.cli import args as cli_args

    argv_list = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=os.environ.get("MLMS_IR_LOG", "WARNING").upper(), format="%(levelname)s %(name)s: %(message)s")
    # -q and --max-memory hold for this command only: an embedding program (or a test calling
    # main twice) gets its own settings back afterwards.
    was_quiet, was_budget = progress.quiet, os.environ.get("MLMS_IR_MAX_MEMORY")
    try:
        return _main(argv_list, fire, cli_args)
    finally:
        progress.quiet = was_quiet
        if was_budget is None:
            os.environ.pop("MLMS_IR_MAX_MEMORY", None)
        else:
            os.environ["MLMS_IR_MAX_MEMORY"] = was_budget


def _main(argv_list: list[str], fire, cli_args) -> int:
    try:
        rest = _take_quiet(_take_max_memory(argv_list))
        verb = None if cli_args.wants_help(rest) or not rest else rest[0]
        table = commands(verb)
        target, verb_args = cli_args.resolve(table, rest)
        if target is None or isinstance(target, dict) or cli_args.wants_help(verb_args):
            if target is None and verb_args and not cli_args.wants_help(verb_args):
                raise UsageError(f"'{verb_args[0]}' is not a command; mlms_ir -h lists them")
            sys.stdout.write(cli_args.help_text(target, table))
            return 0
        checked = cli_args.check(target, _join_repeated(verb_args))
        fire.Fire(table, command=[*target.path, *checked], name="mlms_ir")
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
