"""``convert``: a torchvision model or a TorchScript file to ONNX, checked numerically."""

from __future__ import annotations

import re
from pathlib import Path

from mlms_ir.errors import MlmsIrError

#: Frameworks ``convert`` takes, and those it names as not supported yet.
FRAMEWORKS = ("torchvision", "torchscript", "keras", "savedmodel", "mxnet")
NOT_YET: tuple[str, ...] = ()
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
    framework: str = "torchvision",
    output: str | None = None,
    input_shape: str | None = None,
    batch: int | None = None,
    weights: str | None = None,
    exporter: str = "auto",
    opset: int | None = None,
) -> None:
    """Convert a model to ONNX, check it against the source on random inputs, print one summary line.

    Args:
        src: a torchvision model name (e.g. resnet50), a TorchScript file (--framework torchscript), a .keras file
            (--framework keras), a SavedModel directory (--framework savedmodel) or an MXNet *-symbol.json
            (--framework mxnet, with --weights *-0000.params and --input-shape).
        framework: torchvision, torchscript (TorchScript files are programs: convert only files you trust), keras or
            savedmodel (through tf2onnx; pip install 'mlms_ir[tensorflow]'), or mxnet (in the MXNet agent env).
        output: the .onnx file to write (default: SRC.onnx in the current folder, or beside the TorchScript file).
        input_shape: torchscript: the input shapes, DIMS or NAME:DIMS (1x3x224x224), repeat for several inputs;
            torchvision: an input shape whose last two dims set the resolution (and first the batch).
        batch: the batch size of the example input (torchscript: replaces the first dim of every shape).
        weights: torchvision: DEFAULT, a weights name (IMAGENET1K_V1) already downloaded, or a local .pth file;
            default: random weights (fine for cost and speed, never for accuracy).
        exporter: auto (dynamo, then legacy when it fails), dynamo or legacy.
        opset: the ONNX opset (default: 17 for legacy, the dynamo exporter's own).
    """
    fw = str(framework).lower()
    if fw in NOT_YET:
        raise MlmsIrError(f"convert does not take {framework} models yet; it takes: {', '.join(FRAMEWORKS)}")
    if fw not in FRAMEWORKS:
        raise MlmsIrError(f"unknown --framework '{framework}'; one of: {', '.join(FRAMEWORKS)}")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise MlmsIrError(f"--batch must be a positive integer, got '{batch}'")
    shapes = _shapes(input_shape)
    if fw == "mxnet":
        if weights is None or not shapes:
            raise MlmsIrError("an MXNet model needs its params file (--weights MODEL-0000.params) and --input-shape (1x3x224x224)")
        from mlms_ir.converters.mxnet import from_mxnet

        dims = [([batch, *d[1:]] if batch else d) for _, d in shapes]
        out = Path(output) if output else Path(str(src).replace("-symbol.json", "")).with_suffix(".onnx")
        print(from_mxnet(src, weights, out, input_shapes=dims).summary())
        return
    if fw in ("keras", "savedmodel"):
        if weights is not None or shapes:
            raise MlmsIrError(f"--weights and --input-shape are for torch models; a {fw} model carries its own")
        from mlms_ir.converters import tensorflow as tfconv

        out = Path(output) if output else Path(str(src).rstrip("/")).with_suffix(".onnx")
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
        result = tconv.from_torchscript(src, [tuple(d) for d in dims], out, exporter=exporter, opset=opset,
                                        input_names=names if all(names) else None)
    print(result.summary())


__all__ = ["convert"]
