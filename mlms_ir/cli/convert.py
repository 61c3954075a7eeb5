"""``convert``: a torchvision model, a TorchScript file, a Keras/SavedModel or MXNet model to ONNX, or an
ONNX model to a TensorFlow SavedModel (``--to savedmodel``), checked numerically."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from mlms_ir.errors import MlmsIrError
from mlms_ir.progress import ProgressBar, progress_bar

#: Frameworks ``convert`` takes, and those it names as not supported yet.
FRAMEWORKS = ("torchvision", "torchscript", "keras", "savedmodel", "mxnet", "onnx")
NOT_YET: tuple[str, ...] = ()
#: Formats ``convert --to`` writes: ONNX from the other frameworks, a TensorFlow SavedModel from ONNX.
TARGETS = ("onnx", "savedmodel")
_DIMS = re.compile(r"^\d+([x,×]\d+)*$")


def _shapes(input_shape) -> list[tuple[str | None, list[int]]]:
    """``NAME:DIMS`` or ``DIMS`` items (``1x3x224x224``), separated by ';' or given as a list."""
    if input_shape is None:
        return []
    if isinstance(input_shape, (list, tuple)) and input_shape and all(isinstance(d, int) for d in input_shape):
        items = ["x".join(str(d) for d in input_shape)]
    elif isinstance(input_shape, (list, tuple)):
        items = [str(v) for v in input_shape]
    else:
        items = str(input_shape).split(";")
    out: list[tuple[str | None, list[int]]] = []
    for item in (s.strip() for s in items):
        if not item:
            continue
        name, sep, spec = item.rpartition(":")
        spec = spec.strip().strip("[]()").replace(" ", "")
        if not _DIMS.match(spec) or (sep and not name):
            raise MlmsIrError(f"--input-shape expects DIMS or NAME:DIMS such as 1x3x224x224, got '{item}'")
        dims = [int(d) for d in re.split(r"[x,×]", spec)]
        if min(dims) < 1:
            raise MlmsIrError(f"--input-shape dims must be positive, got '{item}'")
        out.append((name or None, dims))
    return out


def convert(
    src: str,
    framework: str | None = None,
    output: str | None = None,
    input_shape: str | None = None,
    batch: int | None = None,
    weights: str | None = None,
    exporter: str = "auto",
    opset: int | None = None,
    to: str = "onnx",
    dims: str | None = None,
    overwrite: bool = False,
    python: str | None = None,
) -> None:
    """Convert a model to ONNX (or ONNX to a TensorFlow SavedModel), check it against the source on random
    inputs, print one summary line.

    Args:
        src: a torchvision model name (e.g. resnet50), or with --to savedmodel an .onnx file or zoo:NAME; else a
            TorchScript file (--framework torchscript), a .keras file (--framework keras), a SavedModel directory
            (--framework savedmodel), or an MXNet *-symbol.json (--framework mxnet, with --weights *-0000.params
            and --input-shape).
        framework: the source: torchvision (the default), torchscript (TorchScript files are programs: convert only
            files you trust), keras or savedmodel (through tf2onnx; pip install 'mlms_ir[tensorflow]'), mxnet (in the
            MXNet agent env), or onnx (with --to savedmodel, the default framework then).
        output: the .onnx file to write (default: SRC.onnx in the current folder, or beside the TorchScript file);
            and with --to savedmodel the SavedModel folder (by default SRC_savedmodel beside the .onnx file, or in
            the current folder for a zoo model).
        input_shape: torchscript: the input shapes, DIMS or NAME:DIMS (1x3x224x224), repeat for several inputs;
            for torchvision, one input shape whose last two dims set the resolution (and first the batch).
        batch: the batch size of the example input (torchscript: replaces the first dim of every shape).
        weights: torchvision: DEFAULT, a weights name (IMAGENET1K_V1) already downloaded, or a local .pth file;
            by default random weights (fine for cost and speed, never for accuracy).
        exporter: auto (dynamo, then legacy when it fails), dynamo or legacy.
        opset: the ONNX opset (default: 17 for legacy, the dynamo exporter's own).
        to: onnx (the default) or savedmodel: an ONNX model to a TensorFlow SavedModel through onnx-tf, in the onnx-tf
            agent env (bash tools/make_agent_envs.sh onnx-tf), checked against onnxruntime.
        dims: --to savedmodel: values of the inputs' symbolic dims other than the batch for the check, e.g. seq=16.
        overwrite: --to savedmodel: replace an existing SavedModel folder.
        python: the agent env's interpreter for --framework mxnet or --to savedmodel (default: its usual place).
    """
    target = str(to).lower()
    if target not in TARGETS:
        raise MlmsIrError(f"unknown --to '{to}'; one of: {', '.join(TARGETS)}")
    fw = str(framework).lower() if framework is not None else ("onnx" if target == "savedmodel" else "torchvision")
    if fw in NOT_YET:
        raise MlmsIrError(f"convert does not take {framework} models yet; it takes: {', '.join(FRAMEWORKS)}")
    if fw not in FRAMEWORKS:
        raise MlmsIrError(f"unknown --framework '{framework}'; one of: {', '.join(FRAMEWORKS)}")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise MlmsIrError(f"--batch must be a positive integer, got '{batch}'")
    if target == "savedmodel" or fw == "onnx":
        _to_saved_model(src, fw, target, output, input_shape, batch, weights, exporter, opset, dims, overwrite, python)
        return
    if dims is not None or overwrite:
        raise MlmsIrError("--dims and --overwrite are for --to savedmodel")
    if python is not None and fw != "mxnet":
        raise MlmsIrError("--python is for the converters that run in an agent env (--framework mxnet, --to savedmodel)")
    shapes = _shapes(input_shape)
    if fw == "mxnet":
        if weights is None or not shapes:
            raise MlmsIrError("an MXNet model needs its params file (--weights MODEL-0000.params) and --input-shape (1x3x224x224)")
        from mlms_ir.converters.mxnet import from_mxnet

        dims = [([batch, *d[1:]] if batch else d) for _, d in shapes]
        out = Path(output) if output else Path(str(src).replace("-symbol.json", "")).with_suffix(".onnx")
        with _converting(src):
            result = from_mxnet(src, weights, out, input_shapes=dims, python=python)
        print(result.summary())
        return
    if fw in ("keras", "savedmodel"):
        if weights is not None or shapes:
            raise MlmsIrError(f"--weights and --input-shape are for torch models; a {fw} model carries its own")
        from mlms_ir.converters import tensorflow as tfconv

        out = Path(output) if output else Path(str(src).rstrip("/")).with_suffix(".onnx")
        with _converting(src):
            if fw == "savedmodel":
                result = tfconv.from_saved_model(src, out, opset=opset)
            else:
                result = tfconv.from_keras(tfconv.load_keras(src), out, opset=opset)
        print(result.summary())
        return
    from mlms_ir.converters import torch as tconv

    if fw == "torchvision":
        if len(shapes) > 1:
            raise MlmsIrError("torchvision models take one --input-shape (it sets batch and resolution)")
        resolution = None
        if shapes:
            dims = shapes[0][1]
            if len(dims) < 3:
                shown = "x".join(map(str, dims))
                raise MlmsIrError(f"--input-shape for an image model needs at least 3 dims (NxCxHxW), got {shown}")
            resolution = (dims[-2], dims[-1])
            batch = batch or dims[0]
        out = Path(output) if output else Path(f"{src}.onnx")
        with _converting(src):
            result = tconv.from_torchvision(str(src), out, weights=weights, batch=batch or 1, resolution=resolution,
                                            exporter=exporter, opset=opset)
    else:
        if not shapes:
            raise MlmsIrError("a TorchScript file does not record its input shapes: give --input-shape, e.g. 1x3x224x224")
        if weights is not None:
            raise MlmsIrError("--weights is for torchvision models; a TorchScript file carries its own")
        dims = [([batch, *d[1:]] if batch else d) for _, d in shapes]
        names = [n for n, _ in shapes]
        out = Path(output) if output else Path(src).with_suffix(".onnx")
        with _converting(src):
            result = tconv.from_torchscript(src, [tuple(d) for d in dims], out, exporter=exporter, opset=opset,
                                            input_names=names if all(names) else None)
    print(result.summary())


def _to_saved_model(src, fw, target, output, input_shape, batch, weights, exporter, opset, dims, overwrite, python) -> None:
    """``convert MODEL.onnx --to savedmodel``: ONNX to a TensorFlow SavedModel through onnx-tf."""
    if fw != "onnx":
        raise MlmsIrError(f"--to savedmodel takes an ONNX model (--framework onnx), not {fw}: convert it to ONNX first")
    if target != "savedmodel":
        raise MlmsIrError("an ONNX model is already ONNX: add --to savedmodel to convert it to a TensorFlow SavedModel")
    given = [flag for flag, value in (("--input-shape", input_shape), ("--batch", batch), ("--weights", weights),
                                      ("--exporter", None if exporter == "auto" else exporter), ("--opset", opset)) if value is not None]
    if given:
        raise MlmsIrError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to --to savedmodel (--dims binds the symbolic dims of the check)")
    from mlms_ir.converters.onnx_tf import to_saved_model

    text = str(src)
    if output:
        out = Path(output)
    elif text.startswith("zoo:"):
        out = Path(text[4:].replace("/", "_") + "_savedmodel")
    else:
        p = Path(text.rstrip("/"))
        out = p.with_name(p.stem + "_savedmodel")
    with _converting(text):
        result = to_saved_model(text, out, dims=dims, overwrite=bool(overwrite), python=python)
    print(result.summary())
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)


def _converting(src) -> ProgressBar:
    """A spinner on stderr while a conversion (export, then the check against the source) runs."""
    return progress_bar(None, f"converting {src}", enabled=True)


__all__ = ["convert"]
