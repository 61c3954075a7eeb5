"""Every console example in the README and the docs, run as shown (issue #17).

Each ``$ python -m mlms_ir ...`` line of a ``console`` block is collected with the output shown
under it. Examples that can run here do, in a folder of their own holding the files they name
(stand-ins built below: ``resnet50.onnx`` is a small CNN taking 1x3x224x224 as ResNet-50 does,
``gpt.onnx`` a tiny decoder with dims batch and seq...), and must exit as shown: status 2 when the
output shown is an error line (then that line itself, word for word), 0 otherwise, and the files
they say they wrote must exist. The rest (a GPU, the network, an agent env, a minutes-long
export) are listed in :data:`NOT_RUN` with the reason; their command lines are still checked
against the verb's flags, so a renamed flag cannot linger in the docs. An example in no list runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx.parser
import pytest
from onnx import numpy_helper

from mlms_ir.cli import _join_repeated, commands
from mlms_ir.cli.args import check, resolve

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.rst"))]

#: Examples not run here, by (file, the command's first words): why. Their flags are still checked.
NOT_RUN = {
    ("README.md", "convert resnet50"): "exports ResNet-50 from torchvision (minutes); tests/test_converters.py exports small models",
    ("README.md", "analyze zoo:resnet50"): "builds ResNet-50 into the zoo cache (minutes); tests/test_zoo.py builds small ones",
    ("README.md", "run resnet50.onnx --scenario singlestream"): "two 10 s LoadGen tests; docs/scenarios.rst's shorter ones run",
    ("README.md", "run resnet50.onnx --scenario offline"): "two 10 s LoadGen tests; docs/scenarios.rst's shorter ones run",
    ("README.md", "convert m.keras"): "needs a Keras model file; tests/test_converters_tf.py converts ones it builds",
    ("README.md", "convert zoo:digits-cnn --to savedmodel"): "runs in the onnx-tf agent env (tests/test_converters_onnx_tf.py)",
    ("accuracy.rst", "datasets download mnist"): "downloads MNIST (no network in tests)",
    ("accuracy.rst", "evaluate mnist_cnn.onnx"): "needs the downloaded MNIST and a trained model",
    ("backends.rst", "run --backends mxnet --python"): "names an MXNet env at /opt/mx, a path of the reader's",
    ("counters.rst", "profile model.onnx --backend torch --device cuda"): "needs a CUDA GPU and Nsight Compute",
    ("counters.rst", "report model.onnx --counters"): "reads the counters a GPU run wrote",
    ("store.rst", "sweep gpu.yaml --executor ray"): "needs a Ray cluster with GPUs",
    ("zoo.rst", "zoo build"): "exports torchvision/timm models, resnet50 --weights downloads (tests/test_zoo.py builds small ones)",
    ("zoo.rst", "convert resnet50"): "exports ResNet-50 from torchvision (minutes)",
    ("zoo.rst", "convert model.pt"): "needs a TorchScript file of the reader's (tests/test_converters.py makes one)",
    ("zoo.rst", "convert model.onnx --to savedmodel"): "runs in the onnx-tf agent env (tests/test_converters_onnx_tf.py)",
    ("zoo.rst", "convert zoo:digits-cnn --to savedmodel"): "runs in the onnx-tf agent env",
    ("zoo.rst", "convert bert.onnx --to savedmodel"): "runs in the onnx-tf agent env",
}


@dataclass
class Example:
    file: str
    line: int
    command: str
    shown: list[str] = field(default_factory=list)
    status: int | None = None  # from an `echo $?` after it

    @property
    def args(self) -> list[str]:
        words = shlex.split(self.command, comments=True)[3:]
        return words[:words.index(">")] if ">" in words else words

    @property
    def redirect(self) -> str | None:
        """The file the shell would write stdout to (``> report.md``)."""
        words = shlex.split(self.command, comments=True)
        return words[words.index(">") + 1] if ">" in words else None

    @property
    def expected_status(self) -> int:
        if self.status is not None:
            return self.status
        return 2 if any(s.startswith("mlms_ir: error:") for s in self.shown) else 0

    def skipped(self) -> str | None:
        words = " ".join(self.args)
        return next((why for (f, start), why in NOT_RUN.items() if self.file == f and words.startswith(start)), None)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.command}"


def examples() -> list[Example]:
    """The mlms_ir commands of every console block, with the lines shown under each."""
    found: list[Example] = []
    for path in DOCS:
        lines = path.read_text().split("\n")
        in_console = False
        current: Example | None = None
        i = 0
        while i < len(lines):
            text = lines[i]
            stripped = text.strip()
            if stripped in ("```console", ".. code-block:: console"):
                in_console, current = True, None
            elif stripped.startswith("```") or (stripped.startswith(".. ") and "::" in stripped):
                in_console, current = False, None
            elif in_console and stripped.startswith("$ "):
                cmd, line_no = stripped[2:], i + 1
                while cmd.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    cmd = cmd[:-1] + " " + lines[i].strip()
                if cmd.startswith("python -m mlms_ir"):
                    current = Example(path.name, line_no, cmd)
                    found.append(current)
                elif cmd.startswith("echo $?") and current is not None and i + 1 < len(lines):
                    current.status = int(lines[i + 1].strip())
                    current = None
                else:
                    current = None
            elif in_console and current is not None and stripped:
                current.shown.append(stripped)
            i += 1
    return found


# ----------------------------------------------------------------------------- stand-in models


def _cnn224() -> onnx.ModelProto:
    """A small CNN with ResNet-50's input (x: batch x 3 x 224 x 224) and 1000 classes."""
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    cnn (float[batch,3,224,224] x) => (float[batch,1000] logits) {
      c = Conv <kernel_shape=[32,32], strides=[32,32]> (x, w1, b1)
      r = Relu (c)
      p = GlobalAveragePool (r)
      f = Flatten (p)
      logits = Gemm <transB=1> (f, w2, b2)
    }""")
    rng = np.random.default_rng(0)
    for name, shape in (("w1", (8, 3, 32, 32)), ("b1", (8,)), ("w2", (1000, 8)), ("b2", (1000,))):
        m.graph.initializer.append(numpy_helper.from_array((0.05 * rng.standard_normal(shape)).astype(np.float32), name))
    return m


def _decoder(inputs: tuple[str, ...] = ("ids",), seq: str = "seq") -> onnx.ModelProto:
    """A tiny attention block over token ids: embedding, scores (seq x seq), softmax, mix; dims batch, ``seq``."""
    decl = ", ".join(f"int64[batch,{seq}] {n}" for n in inputs)
    mask = ""
    if len(inputs) > 1:
        mask = f"""
      mf = Cast <to=1> ({inputs[1]})
      mu = Unsqueeze (mf, one)
      s2 = Add (s1, mu)"""
    scores = "s2" if mask else "s1"
    m = onnx.parser.parse_model(f"""
    <ir_version: 8, opset_import: ["" : 17]>
    dec ({decl}) => (float[batch,{seq},16] y) {{
      e = Gather (emb, {inputs[0]})
      q = MatMul (e, wq)
      k = MatMul (e, wk)
      kt = Transpose <perm=[0,2,1]> (k)
      s1 = MatMul (q, kt){mask}
      a = Softmax <axis=-1> ({scores})
      v = MatMul (e, wv)
      y = MatMul (a, v)
    }}""")
    rng = np.random.default_rng(1)
    for name, shape in (("emb", (100, 16)), ("wq", (16, 16)), ("wk", (16, 16)), ("wv", (16, 16))):
        m.graph.initializer.append(numpy_helper.from_array((0.1 * rng.standard_normal(shape)).astype(np.float32), name))
    m.graph.initializer.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "one"))
    onnx.checker.check_model(m, full_check=True)
    return m


#: The files an example names, by name (``model.onnx`` is the small CNN unless the page binds a seq dim).
def _files(page: str) -> dict[str, object]:
    cnn = _cnn224()
    files: dict[str, object] = {"resnet50.onnx": cnn, "vit_b_16.onnx": cnn, "model.onnx": cnn, "gpt.onnx": _decoder(),
                                "bert.onnx": _decoder(("input_ids", "attention_mask")), "gpt2.onnx": _decoder(seq="sequence")}
    if page == "index.rst":
        files["model.onnx"] = _decoder()
    files["my-gpu.json"] = json.dumps({"name": "my-gpu", "description": "an accelerator of ours",
                                       "peak_flops": {"fp32": 2.0e13, "fp16": 1.6e14, "int8": 3.2e14}, "bandwidth_bytes_per_s": 1.5e12})
    spec = "name: demo\nmodels: [{model}]\nbackends: [ort, reference]\nbatches: [1]\niterations: 3\nwarmup: 1\n"
    files["spec.yaml"] = spec
    files["cpu.yaml"] = spec
    return files


def _prepare(folder: Path, page: str) -> None:
    for name, content in _files(page).items():
        p = folder / name
        if isinstance(content, onnx.ModelProto):
            onnx.save(content, p)
        else:
            from mlms_ir.zoo import builtin_path

            p.write_text(str(content).replace("{model}", str(builtin_path())))


#: Files an example reads that earlier examples on its page do not write: made first, by these commands.
BEFORE = {
    ("README.md", "report resnet50.onnx"): [["diverge", "resnet50.onnx", "--batch", "1", "-o", "div.json"],
                                           ["run", "resnet50.onnx", "--batch", "1", "--iters", "3", "-o", "runs.json"]],
}


# ----------------------------------------------------------------------------- the tests


ALL = examples()


def test_the_examples_are_found():
    pages = {e.file for e in ALL}
    assert {"README.md", "cli.rst", "quickstart.rst", "store.rst", "zoo.rst", "symbolic.rst"} <= pages
    assert len(ALL) >= 60
    unused = [k for k in NOT_RUN if not any(e.file == k[0] and " ".join(e.args).startswith(k[1]) for e in ALL)]
    assert not unused, f"NOT_RUN lists examples the docs no longer have: {unused}"


@pytest.mark.parametrize("ex", ALL, ids=str)
def test_every_example_is_a_command_line_the_verb_takes(ex):
    """What the docs show working uses flags the verb has (a usage mistake shown as one is shown failing)."""
    target, rest = resolve(commands(), ex.args)
    assert target is not None and not isinstance(target, dict), ex
    if ex.expected_status == 0:
        check(target, _join_repeated(rest))


def _run(args: list[str], folder: Path, redirect: str | None = None) -> tuple[int, str, str]:
    """The command as a user runs it: its own process (a forked backend child inherits nothing of
    the test's threads), in the page's folder and store."""
    env = {**os.environ, "MLMS_IR_STORE": str(folder / "results.sqlite"), "COLUMNS": "160"}
    done = subprocess.run([sys.executable, "-m", "mlms_ir", *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=900)
    if redirect:
        (folder / redirect).write_text(done.stdout)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("page", sorted({e.file for e in ALL}))
def test_examples_run_as_shown(page, tmp_path):
    """The page's examples in order, in one folder and one results store: a later example reads what
    an earlier one wrote, and ``runs show 7`` means the run the page's example recorded as 7."""
    _prepare(tmp_path, page)
    run_ids: dict[str, str] = {}  # the page's run ids -> this store's
    for ex in [e for e in ALL if e.file == page]:
        if ex.skipped():
            continue
        for words, setup in BEFORE.items():
            if ex.file == words[0] and " ".join(ex.args).startswith(words[1]):
                for args in setup:
                    assert _run([*args, "--store", "none"], tmp_path)[0] == 0, (ex, args)
        args = ex.args
        if args[:1] == ["runs"] and args[1:2] in (["show"], ["compare"]):
            args = [run_ids.get(a, a) for a in args]
        status, out, err = _run(args, tmp_path, ex.redirect)
        assert status == ex.expected_status, f"{ex}\nexit {status}, shown {ex.expected_status}\n{err}"
        shown_errors = [s for s in ex.shown if s.startswith("mlms_ir: error:")]
        if shown_errors:
            assert err.strip().splitlines() == shown_errors, ex
        for line in ex.shown:
            recorded = re.match(r"recorded runs? (\d+)", line)
            ours = re.search(r"recorded runs? (\d+)", err)
            if recorded and ours:
                run_ids[recorded.group(1)] = ours.group(1)
            wrote = re.match(r"wrote (\S+)$", line)
            if wrote:
                assert (tmp_path / wrote.group(1)).exists(), (ex, wrote.group(1))
