"""What Fire does not do for us: check a command line against the verb before anything runs, and help.

Fire calls a verb with whatever flags it is given and reports the ones the verb does not take only
after the call has run (and recorded its result). :func:`check` walks the arguments the way Fire
will (``--flag value``, ``--flag=value``, ``--flag`` and ``--noflag`` for booleans, positional
values in parameter order) and raises :class:`UsageError` on the first thing the verb would not
take: an unknown flag (with a did-you-mean), a short flag other than ``-o``/``-h``, a positional
value too many, a flag given twice. :func:`help_text` writes a verb's help from its signature and
docstring: plain text on stdout, no pager, and the synopsis shows the positional operand
(``mlms_ir run [MODEL] [flags]``).
"""

from __future__ import annotations

import difflib
import inspect
import re
import shutil
import textwrap
from dataclasses import dataclass, field

from mlms_ir.errors import UsageError

#: Flags of every verb, taken off the command line before Fire sees it (see :mod:`mlms_ir.cli`).
GLOBAL_FLAGS = (
    ("--max-memory SIZE", "memory budget for declared sizes and ONNX's inference (8G, 512M, bytes; default: "
                          "$MLMS_IR_MAX_MEMORY, else 3/4 of the memory available)"),
    ("-q, --quiet", "no progress bars (they are also off when stderr is not a terminal)"),
    ("-h, --help", "show this help and exit"),
)

#: Short flags and the long flag each stands for, on every verb that has it.
SHORT_FLAGS = {"-o": "output", "-m": "model"}

#: The first parameter with one of these names is the verb's operand, shown as such in the synopsis.
OPERANDS = ("model", "src", "spec", "run", "name")


@dataclass
class Verb:
    """A command's target: the function (or bound method) Fire will call, and how it is named."""

    path: list[str]
    fn: object
    params: dict[str, inspect.Parameter] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return " ".join(self.path)


_SINGLE_CHAR = re.compile(r"^-[a-zA-Z](=|$)")


def is_flag(arg: str) -> bool:
    """Whether Fire reads ``arg`` as a flag (``--x``, ``-x``; not ``-1`` nor ``-``)."""
    return arg.startswith("--") or bool(re.match(r"^-[a-zA-Z]", arg))


def subcommands(obj: object) -> dict[str, object]:
    """A command group's verbs (a class instance's public methods)."""
    return {n: getattr(obj, n) for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n))}


def resolve(commands: dict, args: list[str]) -> tuple[Verb | dict | None, list[str]]:
    """The verb ``args`` names and the arguments left for it; a dict of choices where the command line
    stops at a group (``mlms_ir runs``), None where it names no verb."""
    if not args or is_flag(args[0]):
        return None, args
    name = args[0]
    if name not in commands:
        raise UsageError(f"unknown command '{name}'{_did_you_mean(name, commands)}; the commands are: {', '.join(commands)}")
    target = commands[name]
    rest = args[1:]
    path = [name]
    if not inspect.isfunction(target):
        group = subcommands(target)
        if not rest or is_flag(rest[0]):
            return {"path": path, "choices": group}, rest
        sub = rest[0]
        if sub not in group:
            raise UsageError(f"'{name}' has no command '{sub}'{_did_you_mean(sub, group)}; its commands are: {', '.join(group)}")
        target, rest, path = group[sub], rest[1:], [name, sub]
    params = dict(inspect.signature(target).parameters)
    return Verb(path, target, params), rest


def _did_you_mean(word: str, choices, prefix: str = "") -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def wants_help(args: list[str]) -> bool:
    """``-h`` or ``--help`` anywhere among a verb's arguments (but not as another flag's value)."""
    return any(a in ("-h", "--help") for a in args)


def check(verb: Verb, args: list[str]) -> list[str]:
    """``args`` with short flags written long (``-o`` as ``--output``), once every flag and value is
    one that ``verb`` takes; raises :class:`UsageError` otherwise."""
    params = verb.params
    keywords = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params.values())
    bools = {n for n in keywords if isinstance(params[n].default, bool)}
    out: list[str] = []
    given: set[str] = set()
    positionals: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            raise UsageError(f"'--' is not an argument of {verb.name}; values that start with '-' are given as --flag=VALUE")
        if not is_flag(arg):
            positionals.append(arg)
            out.append(arg)
            i += 1
            continue
        flag, eq, value = arg.partition("=")
        if not flag.startswith("--"):
            long = SHORT_FLAGS.get(flag)
            if long is None or long not in keywords:
                known = ", ".join(f"{s} (--{lf})" for s, lf in SHORT_FLAGS.items() if lf in keywords)
                raise UsageError(f"{verb.name} has no flag {flag}" + (f"; its short flags: {known}, -h" if known else "; its one short flag is -h")
                                 + f" (mlms_ir {verb.name} -h lists its flags)")
            flag = "--" + long.replace("_", "-")
        key = flag[2:].replace("-", "_")
        bool_syntax = not eq and (i + 1 == len(args) or is_flag(args[i + 1]))
        if key not in keywords and not (bool_syntax and key.startswith("no") and key[2:] in bools):
            close = difflib.get_close_matches(key, sorted(keywords), n=1, cutoff=0.6)
            hint = f"; did you mean {_flag_name(close[0])}?" if close else ""
            raise UsageError(f"{verb.name} has no flag {flag}{hint} (mlms_ir {verb.name} -h lists its flags)")
        name = key if key in keywords else key[2:]
        p = params[name]
        if bool_syntax and not isinstance(p.default, bool) and "bool" not in str(p.annotation) and "Any" not in str(p.annotation):
            raise UsageError(f"{flag} needs a value ({flag}{_metavar(p)})")
        if name in given:
            raise UsageError(f"{flag} is given twice")
        given.add(name)
        out.append(flag + eq + value)
        if not eq and not bool_syntax:
            out.append(args[i + 1])
            i += 1
        i += 1
    # Fire fills any parameter positionally; only the operands (the synopsis' MODEL, SRC...) are meant to be
    free = [p.name for p in _operand(verb) if p.kind == p.POSITIONAL_OR_KEYWORD and p.name not in given]
    if not varargs and len(positionals) > len(free):
        extra = positionals[len(free)]
        raise UsageError(f"{verb.name} takes {_operands_text(free)}; '{extra}' is one value too many"
                         + (" (a flag's value that starts with '-' is given as --flag=VALUE)" if extra.startswith("-") else ""))
    missing = [n for n, p in params.items() if p.default is p.empty and p.kind == p.POSITIONAL_OR_KEYWORD and n not in given]
    if len(positionals) < len(missing):
        raise UsageError(f"{verb.name} needs {missing[len(positionals)].upper()} (mlms_ir {verb.name} -h shows how)")
    return out


def _operands_text(free: list[str]) -> str:
    if not free:
        return "no positional value"
    return "at most " + (f"one positional value ({free[0].upper()})" if len(free) == 1 else f"{len(free)} positional values")


def _flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _operand(verb: Verb) -> list[inspect.Parameter]:
    out = []
    for i, (n, p) in enumerate(verb.params.items()):
        if p.kind == p.VAR_POSITIONAL or p.default is p.empty or (i == 0 and n in OPERANDS):
            out.append(p)
    return out


def _docs(fn) -> tuple[str, dict[str, str]]:
    import fire.docstrings

    info = fire.docstrings.parse(inspect.getdoc(fn) or "")
    summary = " ".join(x for x in (info.summary, info.description) if x) if info.description else (info.summary or "")
    return summary, {a.name: " ".join((a.description or "").split()) for a in (info.args or [])}


def _metavar(p: inspect.Parameter) -> str:
    if isinstance(p.default, bool):
        return ""
    kind = str(p.annotation).split("|")[0].strip()
    return " " + {"int": "N", "float": "X"}.get(kind, p.name.split("_")[-1].upper())


def _width() -> int:
    return max(60, min(shutil.get_terminal_size((100, 24)).columns, 120))


def _rows(rows: list[tuple[str, str]], width: int) -> list[str]:
    left = min(max((len(a) for a, _ in rows), default=0) + 2, 30)
    out = []
    for a, b in rows:
        body = textwrap.wrap(b, width - left - 2) or [""]
        if len(a) + 2 > left:
            out.append("  " + a)
            out.extend(" " * (left + 2) + line for line in body)
        else:
            out.append("  " + a.ljust(left) + body[0])
            out.extend(" " * (left + 2) + line for line in body[1:])
    return out


def help_text(target: Verb | dict | None, commands: dict) -> str:
    """Help for a verb, a command group or (``target`` None) the whole command line."""
    width = _width()
    if target is None:
        rows = [(n, _docs(c if callable(c) and inspect.isfunction(c) else type(c))[0].split(". ")[0].rstrip("."))
                for n, c in commands.items()]
        return "\n".join(["usage: mlms_ir COMMAND [ARGS] [flags]", "",
                          "Dissect an ONNX model: static cost, cross-backend runs, per-node profiles, divergence, accuracy.", "",
                          "commands:", *_rows(rows, width), "", "global flags:", *_rows(list(GLOBAL_FLAGS), width), "",
                          "mlms_ir COMMAND -h shows a command's flags."]) + "\n"
    if isinstance(target, dict):
        name = " ".join(target["path"])
        rows = [(n, _docs(f)[0].split(". ")[0].rstrip(".")) for n, f in target["choices"].items()]
        return "\n".join([f"usage: mlms_ir {name} COMMAND [ARGS] [flags]", "", "commands:", *_rows(rows, width), "",
                          f"mlms_ir {name} COMMAND -h shows a command's flags."]) + "\n"
    verb = target
    summary, args = _docs(verb.fn)
    operands = _operand(verb)
    synopsis = ["usage: mlms_ir", verb.name]
    for p in operands:
        shown = p.name.upper()
        synopsis.append(f"[{shown}...]" if p.kind == p.VAR_POSITIONAL else (shown if p.default is p.empty else f"[{shown}]"))
    synopsis.append("[flags]")
    lines = [" ".join(synopsis), ""]
    lines += textwrap.wrap(summary, width) + [""]
    if operands:
        lines += ["arguments:", *_rows([(p.name.upper(), args.get(p.name, "")) for p in operands], width), ""]
    flag_rows = []
    for n, p in verb.params.items():
        if p in operands:
            continue
        short = next((s + ", " for s, lf in SHORT_FLAGS.items() if lf == n), "")
        text = args.get(n, "")
        if p.default not in (None, p.empty, False) and "default" not in text:
            text += f" (default: {p.default})"
        flag_rows.append((short + _flag_name(n) + _metavar(p), text.strip()))
    if flag_rows:
        lines += ["flags:", *_rows(flag_rows, width), ""]
    lines += ["global flags:", *_rows(list(GLOBAL_FLAGS), width)]
    return "\n".join(lines) + "\n"
