"""The command line catches mistakes before it runs: unknown flags and commands, -h on every verb,
-o as --output, one --input-shape syntax, unknown backend names."""

from __future__ import annotations

import subprocess
import sys

import onnx
import pytest

from mlms_ir.cli import commands, main
from mlms_ir.cli.args import check, resolve, subcommands
from mlms_ir.store import Store


def _cli(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlms_ir", *args], capture_output=True, text=True, timeout=120, env=env)


def _every_verb() -> list[list[str]]:
    out = []
    for name, target in commands().items():
        if callable(target) and not hasattr(target, "__self__") and type(target).__name__ == "function":
            out.append([name])
        else:
            out.extend([name, sub] for sub in subcommands(target))
    return out


@pytest.mark.parametrize("args,said", [
    (["analyze", "--batchsize", "1"], "analyze has no flag --batchsize; did you mean --batch?"),
    (["run", "--iter", "5"], "run has no flag --iter; did you mean --iters?"),
    (["profile", "--bakend", "ort"], "profile has no flag --bakend; did you mean --backend?"),
    (["runs", "list", "--limt", "3"], "runs list has no flag --limt; did you mean --limit?"),
    (["analyze", "-x"], "analyze has no flag -x"),
    (["anlyze"], "unknown command 'anlyze' (did you mean analyze?)"),
    (["zoo", "biuld", "resnet18"], "'zoo' has no command 'biuld' (did you mean build?)"),
    (["analyze", "a.onnx", "json"], "analyze takes at most one positional value (MODEL); 'json' is one value too many"),
    (["analyze", "--top"], "--top needs a value (--top N)"),
    (["analyze", "--top", "3", "--top", "4"], "--top is given twice"),
    (["convert"], "convert needs SRC"),
])
def test_mistakes_exit_2_before_anything_runs(tmp_path, args, said):
    store = tmp_path / "s.sqlite"
    r = _cli(*args, "--store", str(store)) if args[0] in ("analyze", "run", "profile") else _cli(*args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("mlms_ir: error: ") and said in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert r.stdout == "" and not store.exists()  # nothing ran, nothing was recorded


def test_every_verb_has_help_that_runs_nothing(tmp_path, capsys):
    """-h and --help on every verb: the verb's own flags, the operand in the synopsis, no pager, no
    Fire banner, exit 0, and nothing computed (profile -h does not profile). Every verb in this
    process; a few, below, as a user's own process."""
    for path in _every_verb():
        for flag in ("-h", "--help"):
            code = main([*path, flag, "--store", str(tmp_path / "s.sqlite")] if flag == "-h" else [*path, flag])
            out, err = capsys.readouterr()
            assert code == 0, (path, err)
            assert out.startswith(f"usage: mlms_ir {' '.join(path)}"), (path, out[:200])
            assert "INFO: Showing help" not in out + err and err == "", (path, err)
    assert not (tmp_path / "s.sqlite").exists()
    r = _cli("analyze", "-h", "--store", str(tmp_path / "s.sqlite"))
    assert r.returncode == 0 and r.stdout.startswith("usage: mlms_ir analyze") and r.stderr == "", r.stderr
    assert not (tmp_path / "s.sqlite").exists()
    r = _cli("profile", "-h")
    assert r.stdout.splitlines()[0] == "usage: mlms_ir profile [MODEL] [flags]"
    assert "-o, --output" in r.stdout and "--backend" in r.stdout and "-q, --quiet" in r.stdout
    assert _cli("convert", "--help").stdout.startswith("usage: mlms_ir convert SRC [flags]")
    assert _cli("runs", "compare", "-h").stdout.startswith("usage: mlms_ir runs compare [RUNS...] [flags]")
    top = _cli("-h")
    assert top.returncode == 0 and "commands:" in top.stdout and "analyze" in top.stdout and "global flags:" in top.stdout
    assert _cli().stdout == top.stdout


def test_dash_o_is_output_everywhere(tmp_path):
    """-o was ambiguous on run, profile and diverge (--opt or --output); it is --output."""
    for verb in ("analyze", "run", "profile", "diverge"):
        out = tmp_path / f"{verb}.json"
        extra = ["--iters", "2", "--warmup", "0"] if verb == "run" else (["--runs", "1", "--iters", "2"] if verb == "profile" else [])
        r = _cli(verb, "--batch", "1", "-o", str(out), "--store", "none", *extra)
        assert r.returncode == 0, (verb, r.stderr)
        assert out.read_text().lstrip().startswith("{"), verb
    assert check(resolve(commands(), ["diverge"])[0], ["-o", "x.json"]) == ["--output", "x.json"]


def test_check_follows_fires_rules():
    verb, rest = resolve(commands(), ["analyze", "m.onnx", "--lenient", "--top=3", "--input-shape", "x:1", "--nolenient"])
    with pytest.raises(Exception, match="given twice"):
        check(verb, rest)
    verb, rest = resolve(commands(), ["run", "m.onnx", "--atol", "-1", "--input_shape", "1x2"])
    assert check(verb, rest) == ["m.onnx", "--atol", "-1", "--input_shape", "1x2"]  # '-1' is a value, not a flag
    verb, rest = resolve(commands(), ["runs", "compare", "1", "2", "3", "--top", "4"])
    assert verb.path == ["runs", "compare"] and check(verb, rest) == ["1", "2", "3", "--top", "4"]


def test_unknown_backend_is_an_error_listing_the_names(tmp_path):
    store = tmp_path / "s.sqlite"
    r = _cli("run", "--backends", "ort,foo", "--batch", "1", "--store", str(store))
    assert r.returncode == 2 and "unknown backend 'foo'; known backends: ort, reference, torch" in r.stderr
    assert not store.exists()
    r = _cli("diverge", "--reference", "refrence", "--batch", "1", "--store", str(store))
    assert r.returncode == 2 and "unknown backend 'refrence' (did you mean reference?)" in r.stderr


def test_unavailable_backends_are_reported_not_stored(tmp_path):
    """tensorrt cannot run on the CPU: its row says why, and the store keeps only what ran."""
    store = tmp_path / "s.sqlite"
    r = _cli("run", "--backends", "ort,tensorrt", "--batch", "1", "--iters", "3", "--warmup", "0", "--store", str(store))
    assert r.returncode == 0, r.stderr
    assert "tensorrt" in r.stdout and "unavailable" in r.stdout
    with Store(store) as st:
        assert [(x.backend, x.status) for x in st.list()] == [("ort", "ok")]


def test_one_input_shape_syntax(tmp_path, capsys):
    """Bare DIMS binds a model's only input (as convert takes it); NAME:DIMS names one of several."""
    one = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N,4] x) => (y) { y = Relu (x) }""")
    two = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[A,4] a, float[B,4] b) => (c) { c = Concat <axis=0> (a, b) }""")
    onnx.save(one, tmp_path / "one.onnx")
    onnx.save(two, tmp_path / "two.onnx")
    assert main(["analyze", str(tmp_path / "one.onnx"), "--input-shape", "3x4", "--format", "json", "--store", "none"]) == 0
    assert '"input_shapes": {\n      "x": [\n        3,' in capsys.readouterr().out  # bound to the input's real name
    assert main(["analyze", str(tmp_path / "two.onnx"), "--input-shape", "3x4", "--store", "none"]) == 2
    assert "binds a model's only input; this one has 2: a, b; give NAME:DIMS" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "two.onnx"), "--input-shape", "a:2x4", "--input-shape", "3x4", "--store", "none"]) == 2
    assert "with several, give NAME:DIMS for each" in capsys.readouterr().err


class _Terminal:
    """stderr as a terminal would be: rich draws its bars there."""

    def __init__(self) -> None:
        import io

        self.buf = io.StringIO()

    def write(self, s: str) -> int:
        return self.buf.write(s)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        raise OSError("not a real terminal")


@pytest.mark.parametrize("verb,extra,shown", [
    (["run", "--backends", "ort,reference", "--iters", "3", "--warmup", "0"], [], "run"),
    (["profile", "--runs", "1", "--iters", "2", "--warmup", "0"], [], "profile ort"),
    (["diverge"], [], "diverge"),
])
def test_long_commands_show_progress_unless_quiet(monkeypatch, capsys, verb, extra, shown):
    import re

    for quiet in (False, True):
        term = _Terminal()
        monkeypatch.setattr(sys, "stderr", term)
        monkeypatch.setenv("COLUMNS", "120")
        args = [*verb, "--batch", "1", "--store", "none", *(["--quiet"] if quiet else [])]
        assert main(args) == 0
        drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", term.buf.getvalue())
        if quiet:
            assert drawn == "", drawn
        else:
            assert shown in drawn and re.search(r"\d:\d\d:\d\d", drawn), drawn  # the bar, with its elapsed time
        out = capsys.readouterr().out
        assert "digits_cnn.onnx" in out  # the report itself still goes to stdout
    from mlms_ir import progress

    assert progress.quiet is False  # --quiet held for that command only (a later bar in this process draws)


def test_every_flag_has_its_own_help_text():
    """Every verb's docstring documents each flag once, under its own name, and nothing else: a
    wrapped line that reads like ``word: ...`` starts a new entry for Fire's parser, which took the
    rest of --atol's text as the help of --precision (``diverge --help`` printed the tolerances
    under --precision, and --atol stopped mid-sentence)."""
    import inspect

    import fire.docstrings

    problems = []
    for path in _every_verb():
        verb, _ = resolve(commands(), path)
        fn = verb.fn
        params = [n for n, p in inspect.signature(fn).parameters.items() if n != "self" and p.kind != p.VAR_KEYWORD]
        info = fire.docstrings.parse(inspect.getdoc(fn) or "")
        names = [a.name for a in info.args or []]
        dupes = sorted({n for n in names if names.count(n) > 1})
        strays = [n for n in names if n not in params]
        missing = [n for n in params if n not in names and inspect.signature(fn).parameters[n].kind != inspect.Parameter.VAR_POSITIONAL]
        # Fire keeps only the text before a colon on a wrapped line: "(default: X)" loses "X)"
        doc = (inspect.getdoc(fn) or "").split("Args:", 1)[-1].split("\n\n", 1)[0].splitlines()
        cut = [line.strip() for line in doc[1:] if line.startswith("        ") and ":" in line]
        if dupes or strays or missing or cut:
            problems.append((" ".join(path), {"twice": dupes, "not a flag": strays, "undocumented": missing,
                                              "wrapped line with a colon": cut}))
    assert not problems, problems
