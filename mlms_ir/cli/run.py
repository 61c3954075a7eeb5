"""``run`` (cross-backend latency), ``profile`` (per-node time on one backend) and ``backends``."""

from __future__ import annotations

import json
import sys
from pathlib import Path


from mlms_ir.cli.common import (backend_names, batch_list, dims_text, emit, input_shape_list, model_path, nonnegative_float, output_format,
                                positive_float, positive_int, session_options)
from mlms_ir.errors import MlmsIrError


def run(
    model: str | None = None,
    backends: str = "ort",
    device: str = "cpu",
    batch: str | None = None,
    iters: int = 100,
    warmup: int = 10,
    min_time: float = 0.0,
    inputs: str | None = None,
    input_shape: str | None = None,
    dims: str | None = None,
    opt: str | None = None,
    threads: int | None = None,
    seed: int = 0,
    python: str | None = None,
    worker_timeout: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    format: str | None = None,  # noqa: A002
    output: str | None = None,
    store: str | None = None,
    scenario: str | None = None,
    target_qps: float | None = None,
    latency_bound: float | None = None,
    duration: float = 10.0,
    min_queries: int | None = None,
    max_queries: int | None = None,
    find_peak: bool = False,
    timeout: float | None = None,
) -> None:
    """Time a model on several backends and compare their outputs with the first one.

    Args:
        model: path of an .onnx file (default: the embedded digits-cnn model).
        backends: comma-separated backend names (see `backends`), e.g. ort,torch,reference.
        device: cpu, cuda or tensorrt.
        batch: batch sizes, e.g. 1,8 (the leading dim of every input).
        iters: timed iterations per configuration (at least).
        warmup: untimed runs first.
        min_time: keep iterating until this many seconds have passed.
        inputs: an .npz file of input arrays instead of seeded random data.
        input_shape: DIMS such as 1x3x224x224 (a model with one input) or NAME:DIMS (input:1x3x224x224); repeat for several inputs.
        dims: named symbolic dims, e.g. batch=8,seq=128.
        opt: ORT graph optimisation level: none, basic, extended or all (default: ORT's own).
        threads: ORT's intra-op threads (default: ORT's own, one per core); with --scenario, leave a core to
            LoadGen and the SUT's thread on a small machine.
        seed: seed of the random inputs.
        python: the interpreter of the agent backends (mxnet, onnx-tf): PATH for all of them,
            or NAME=PATH,... per backend.
        worker_timeout: seconds an agent backend may take for one request (default 300).
        atol: outputs agree with the first backend's when every element is within atol + rtol*|first|;
            a backend beyond it is marked (✗, outputs_agree false in JSON), its timing still kept
            (default 1e-4 for a model that computes in fp32, 1e-3 in fp16, 1e-2 in bf16).
        rtol: the relative part of that tolerance (default 1e-3 for fp32, 1e-2 for fp16, 5e-2 for bf16).
        format: table (default) or json; inferred from --output's suffix.
        output: write to this file instead of stdout.
        store: the results store to record this in (default: $MLMS_IR_STORE, else the user's data dir); none: do not record.
        scenario: instead of a timing loop, let MLPerf LoadGen drive the queries in one of its scenarios:
            singlestream, multistream, server or offline (needs the loadgen extra); the result is LoadGen's verdict
            (VALID/INVALID), percentiles and throughput, and --batch is the largest batch the backend serves at once.
        target_qps: --scenario server: the rate of Poisson arrivals (queries per second); offline: the expected QPS.
        latency_bound: --scenario server: the latency bound in ms at the 99th percentile (default: LoadGen's 100 ms).
        duration: --scenario: LoadGen's minimum test duration in seconds.
        min_queries: --scenario: LoadGen's minimum query count (default: what its early stopping needs).
        max_queries: --scenario: stop after this many queries (0: never; default for server: twice what the
            measured capacity serves in --duration, so an impossible target is reported invalid quickly).
        find_peak: --scenario server: search the highest target QPS that LoadGen finds valid under the bound.
        timeout: seconds each backend's measurement may take on the CPU before it is stopped and its row
            failed, the others going on (default no limit).
    """
    names = backend_names(backends)
    fmt = output_format(format, output)
    if scenario is not None:
        _scenario(model, names, scenario=scenario, target_qps=target_qps, latency_bound=latency_bound, duration=duration,
                  min_queries=min_queries, max_queries=max_queries, find_peak=find_peak, device=str(device), batch=batch,
                  inputs=inputs, input_shape=input_shape, dims=dims, seed=seed, options=session_options(names, opt, python, worker_timeout, _threads(threads)),
                  fmt=fmt, output=output, store=store,
                  ignored={"--timeout": timeout is not None, "--iters": iters != 100, "--warmup": warmup != 10,
                           "--min-time": min_time != 0.0, "--atol": atol is not None,
                           "--rtol": rtol is not None})
        return
    given = [f for f, v in {"--target-qps": target_qps is not None, "--latency-bound": latency_bound is not None,
                            "--duration": duration != 10.0, "--min-queries": min_queries is not None,
                            "--max-queries": max_queries is not None, "--find-peak": bool(find_peak)}.items() if v]
    if given:
        raise MlmsIrError(f"{', '.join(given)} belong to LoadGen's scenarios: give --scenario singlestream, multistream, server or offline")
    from mlms_ir.runner import run_backends

    report = run_backends(
        model_path(model),
        names,
        device=str(device),
        batches=batch_list(batch),
        input_shapes=input_shape_list(input_shape),
        dims=dims_text(dims),
        inputs=inputs,
        iterations=positive_int(iters, "--iters"),
        warmup=positive_int(warmup, "--warmup", 0),
        min_time_s=nonnegative_float(min_time, "--min-time"),
        seed=positive_int(seed, "--seed", 0),
        options=session_options(names, opt, python, worker_timeout, _threads(threads)),
        atol=None if atol is None else nonnegative_float(atol, "--atol"),
        rtol=None if rtol is None else nonnegative_float(rtol, "--rtol"),
        progress=True,
        timeout_s=None if timeout is None else positive_float(timeout, "--timeout", "seconds"),
    )
    emit(report, fmt, output)
    from mlms_ir.cli.runs import record
    from mlms_ir.store import records_from_runs

    # a backend that cannot run here is reported in the table, not stored as a failed run
    record(store, lambda: [r for r in records_from_runs(report) if r.payload["run"]["status"] != "unavailable"],
           quiet=all(r.status != "ok" for r in report.runs))
    if all(r.status != "ok" for r in report.runs):
        raise MlmsIrError("no backend ran: " + "; ".join(f"{r.backend}: {r.error}" for r in report.runs))


def _scenario(model, names: list[str], *, scenario, target_qps, latency_bound, duration, min_queries, max_queries, find_peak,
              device: str, batch, inputs, input_shape, dims, seed, options: dict, fmt: str, output, store, ignored: dict) -> None:
    """``run --scenario``: LoadGen drives the queries (mlms_ir.scenarios.run_scenarios)."""
    from mlms_ir.scenarios import run_scenarios, scenario_key

    key = scenario_key(scenario)
    given = [flag for flag, v in ignored.items() if v]
    if given:
        raise MlmsIrError(f"{', '.join(given)} set run's timing loop; with --scenario LoadGen decides the queries "
                          "(see --duration, --min-queries)")
    batches = batch_list(batch)
    if len(batches) > 1:
        raise MlmsIrError("with --scenario, --batch is one number: the largest batch the backend serves at once")

    def number(v, flag: str) -> float | None:
        return None if v is None else positive_float(v, flag)

    report = run_scenarios(
        model_path(model), names, scenario=key, device=device, target_qps=number(target_qps, "--target-qps"),
        latency_bound_ms=number(latency_bound, "--latency-bound"), duration_s=number(duration, "--duration"),
        min_queries=None if min_queries is None else positive_int(min_queries, "--min-queries"),
        max_queries=None if max_queries is None else positive_int(max_queries, "--max-queries", 0),
        find_peak_qps=bool(find_peak), max_batch=batches[0], input_shapes=input_shape_list(input_shape), dims=dims_text(dims),
        inputs=inputs, seed=positive_int(seed, "--seed", 0), options=options, progress=True)
    emit(report, fmt, output)
    from mlms_ir.cli.runs import record
    from mlms_ir.store import records_from_scenarios

    record(store, lambda: [r for r in records_from_scenarios(report) if r.payload["run"]["status"] != "unavailable"],
           quiet=all(r.status != "ok" for r in report.runs))
    if all(r.status != "ok" for r in report.runs):
        raise MlmsIrError("no backend ran: " + "; ".join(f"{r.backend}: {r.error}" for r in report.runs))


def profile(
    model: str | None = None,
    backend: str = "ort",
    device: str = "cpu",
    batch: int | None = None,
    runs: int = 10,
    iters: int = 50,
    warmup: int = 5,
    inputs: str | None = None,
    input_shape: str | None = None,
    dims: str | None = None,
    opt: str | None = None,
    threads: int | None = None,
    roofline: str | None = None,
    top: int = 20,
    trace: str | None = None,
    seed: int = 0,
    format: str | None = None,  # noqa: A002
    output: str | None = None,
    html: str | None = None,
    store: str | None = None,
    counters: bool = False,
    metric_set: str = "roofline",
    metrics: str | None = None,
    counters_dir: str | None = None,
) -> None:
    """Per-node time on one backend, merged with static cost (share, achieved FLOP/s, bound).

    Args:
        model: path of an .onnx file (default: the embedded digits-cnn model).
        backend: one backend name (see `backends`).
        device: cpu, cuda or tensorrt.
        batch: the leading dim of every input.
        runs: traced runs; each node's time is the median over them.
        iters: untraced timed runs for the latency (and the tracing overhead).
        warmup: untimed runs first.
        inputs: an .npz file of input arrays instead of seeded random data.
        input_shape: DIMS (a model with one input) or NAME:DIMS; repeat for several inputs.
        dims: named symbolic dims, e.g. batch=8,seq=128.
        opt: ORT graph optimisation level: none, basic, extended or all.
        threads: ORT's intra-op threads (default: ORT's own, one per core).
        roofline: a device for the roofline bound per node (see `devices`).
        top: how many nodes the table lists.
        trace: write a Chrome/Perfetto trace (JSON) to this file.
        seed: seed of the random inputs.
        format: table (default) or json.
        output: write to this file instead of stdout.
        html: also write the HTML report (graph coloured by time, kernels, plots; with --counters by the hardware counters) to this file.
        store: the results store to record this in (default: $MLMS_IR_STORE, else the user's data dir); none: do not record.
        counters: instead of timing, run once under Nsight Compute (ncu) and give each node's hardware counters (measured FLOPs, DRAM bytes, SM and memory throughput) beside its static counts, on the GPU's roofline; needs --backend torch --device cuda, ncu ($MLMS_IR_NCU or on PATH) and access to the GPU's counters.
        metric_set: the counters' metric set: roofline, throughput or occupancy (none: only --metrics).
        metrics: more ncu metrics to collect, comma-separated.
        counters_dir: keep ncu's CSV, the child's spec and its result in this folder.
    """
    from mlms_ir.report.chrome_trace import chrome_trace
    from mlms_ir.runner import profile_model

    if isinstance(batch, (list, tuple)):
        raise MlmsIrError("profile takes one --batch value")
    if len(backend_names(backend, "--backend")) != 1:
        raise MlmsIrError("profile takes one --backend (run compares several)")
    fmt = output_format(format, output)
    top = positive_int(top, "--top")
    seed = positive_int(seed, "--seed", 0)
    if counters:
        _counters(model, backend=str(backend), device=str(device), batch=batch, input_shape=input_shape, dims=dims, inputs=inputs,
                  seed=seed, warmup=positive_int(warmup, "--warmup", 0), metric_set=metric_set, metrics=metrics, roofline=roofline,
                  top=top, fmt=fmt, output=output, workdir=counters_dir, html=html, store=store,
                  conflicting={"--trace": trace, "--opt": opt, "--threads": threads},
                  ignored={"--runs": runs != 10, "--iters": iters != 50})
        return
    profiled = profile_model(
        model_path(model),
        str(backend),
        device=str(device),
        batch=batch,
        input_shapes=input_shape_list(input_shape),
        dims=dims_text(dims),
        inputs=inputs,
        runs=positive_int(runs, "--runs"),
        iterations=positive_int(iters, "--iters"),
        warmup=positive_int(warmup, "--warmup", 0),
        seed=positive_int(seed, "--seed", 0),
        options=session_options([str(backend)], opt, None, None, _threads(threads)).get(str(backend)) or None,
        roofline_device=roofline,
        progress=True,
    )
    report, traces = profiled.report, profiled.traces
    if trace:
        names = {n.id: n.name or n.id for n in report.nodes}
        try:
            Path(trace).write_text(json.dumps(chrome_trace(traces, names, f"{report.backend}:{report.device}")))
        except OSError as exc:
            raise MlmsIrError(f"cannot write '{trace}': {exc.strerror or exc}") from exc
        print(f"wrote {trace}", file=sys.stderr)
    emit(report, fmt, output, top=top)
    from mlms_ir.cli.runs import record
    from mlms_ir.store import records_from_profile

    record(store, lambda: records_from_profile(report))
    if html:  # the profile's own analysis and graph: the model is not analysed twice
        from mlms_ir.report.html import write_html

        write_html(str(html), profiled.analysis, profiled.graph, profile=report)
        print(f"wrote {html}", file=sys.stderr)


def _counters(model, *, backend: str, device: str, batch, input_shape, dims, inputs, seed, warmup, metric_set, metrics, roofline, top,
              fmt, output, workdir, html, store, conflicting: dict, ignored: dict) -> None:
    """``profile --counters``: one run under Nsight Compute, counters per node (mlms_ir.gpu.ncu_run)."""
    from mlms_ir.gpu.ncu_run import run_counters

    if backend not in ("torch", "pytorch") or not device.startswith("cuda"):
        raise MlmsIrError("--counters runs the torch backend on CUDA under Nsight Compute: give --backend torch --device cuda")
    given = [flag for flag, v in {**conflicting, **ignored}.items() if v]
    if given:
        raise MlmsIrError(f"--counters measures one run under ncu; it cannot be combined with {', '.join(given)} (run profile without --counters for those)")
    report = run_counters(
        model_path(model),
        batch=batch,
        input_shapes=input_shape_list(input_shape),
        dims=dims_text(dims),
        inputs=inputs,
        seed=int(seed),
        metric_set=None if str(metric_set).lower() == "none" else str(metric_set),
        metrics=metrics if metrics is None else (",".join(metrics) if isinstance(metrics, (list, tuple)) else str(metrics)),
        device=roofline,
        cuda_device=device,
        warmup=warmup,
        workdir=_counters_dir(workdir),
    )
    emit(report, fmt, output, top=top)
    from mlms_ir.cli.runs import record
    from mlms_ir.store import records_from_counters

    record(store, lambda: records_from_counters(report, device=device))
    if html:
        from mlms_ir.cli.report import write_html_for

        write_html_for(model_path(model), str(html), counters=report, input_shapes=input_shape_list(input_shape), batch=batch,
                       dims=dims_text(dims), device=roofline or report.device)


def _counters_dir(workdir: str | None) -> Path | None:
    if not workdir:
        return None
    path = Path(workdir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MlmsIrError(f"cannot create '{workdir}': {exc.strerror or exc}") from exc
    return path


def backends(device: str | None = None) -> None:
    """List every backend with its devices and, where it cannot run here, why.

    Args:
        device: list only this device's rows: cpu, cuda or tensorrt.
    """
    from mlms_ir.report.text import default_console
    from rich.table import Table
    from rich.text import Text

    from mlms_ir.backends import registry

    known = sorted({d for name in registry.names() for d in registry.get(name).devices})
    if device is not None and str(device) not in known:
        raise MlmsIrError(f"no backend runs on device '{device}'; the devices are: {', '.join(known)}")

    t = Table(title="backends")
    for col in ("backend", "device", "available", "why not"):
        t.add_column(col, overflow="fold")
    for name in registry.names():
        be = registry.get(name)
        for dev in be.devices:
            if device is not None and dev != device:
                continue
            a = be.available(dev)
            t.add_row(name, dev, "yes" if a.ok else "no", Text(a.reason))
    default_console().print(t)


def diverge(
    model: str | None = None,
    backends: str = "ort",
    reference: str = "reference",
    device: str = "cpu",
    batch: int | None = None,
    inputs: str | None = None,
    input_shape: str | None = None,
    dims: str | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    precision: str = "fp32",
    opt: str | None = None,
    introduced: str = "auto",
    top: int = 15,
    seed: int = 0,
    budget_mib: float = 1024,
    format: str | None = None,  # noqa: A002
    output: str | None = None,
    html: str | None = None,
    store: str | None = None,
) -> None:
    """Which node makes a backend disagree with a reference, and by how much.

    Every intermediate tensor of each backend is compared with the reference's; nodes whose
    outputs diverge are re-run alone with the reference's inputs to separate the error they
    introduce from the error they pass on.

    Args:
        model: path of an .onnx file (default: the embedded digits-cnn model).
        backends: comma-separated backends under test, e.g. ort,torch.
        reference: the backend taken as ground truth (default: the ONNX reference evaluator).
        device: cpu, cuda or tensorrt for the backends under test.
        batch: the leading dim of every input.
        inputs: an .npz file of input arrays instead of seeded random data.
        input_shape: DIMS (a model with one input) or NAME:DIMS; repeat for several inputs.
        dims: named symbolic dims, e.g. batch=8,seq=128.
        atol: absolute tolerance: an element diverges when |d| > atol + rtol*|ref| (default 1e-4
            when the backends compute in fp32, 1e-3 in fp16, 1e-2 in bf16, 5e-2 in int8).
        rtol: relative tolerance (default 1e-3 when the backends compute in fp32, 1e-2 in fp16,
            5e-2 in bf16, 1e-1 in int8).
        precision: run the backends under test in fp32, fp16 (ORT, torch), bf16 (torch) or int8 (ORT);
            fp32 runs the model as it is (one exported in fp16 is reported, and judged, in fp16).
        opt: ORT graph optimisation level (default none, so tensors map one to one).
        introduced: auto (re-run diverging nodes alone), all, or none.
        top: how many nodes the table lists.
        seed: seed of the random inputs.
        budget_mib: the most tensor data (MiB) held at once; a larger fp32 model is run and
            compared in consecutive segments.
        format: table (default) or json.
        output: write to this file instead of stdout.
        html: also write the HTML report (graph coloured by error) to this file.
        store: the results store to record this in (default: $MLMS_IR_STORE, else the user's data dir); none: do not record.
    """
    from mlms_ir.divergence import diverge_backends

    names = backend_names(backends)
    backend_names(reference, "--reference")
    if isinstance(batch, (list, tuple)):
        raise MlmsIrError("diverge takes one --batch value")
    fmt = output_format(format, output)
    budget = positive_float(budget_mib, "--budget-mib", "MiB")
    result = diverge_backends(
        model_path(model), names, str(reference), options=session_options(names, opt, None, None), device=str(device), batch=batch,
        input_shapes=input_shape_list(input_shape), dims=dims_text(dims), inputs=inputs,
        atol=None if atol is None else nonnegative_float(atol, "--atol"),
        rtol=None if rtol is None else nonnegative_float(rtol, "--rtol"),
        precision=str(precision), introduced=str(introduced), seed=positive_int(seed, "--seed", 0), top=positive_int(top, "--top"),
        memory_budget_bytes=int(budget * 2**20), progress=True)
    reports, failed = result.reports, result.failed
    emit(result, fmt, output, top=top)
    if reports:
        from mlms_ir.cli.runs import record
        from mlms_ir.store import records_from_divergence

        record(store, lambda: records_from_divergence(reports))
    if html and reports:
        from mlms_ir.cli.report import write_html_for

        write_html_for(model_path(model), str(html), divergence=reports, input_shapes=input_shape_list(input_shape), batch=batch,
                       dims=dims_text(dims))
    if not reports:
        raise MlmsIrError("no backend could be compared: " + "; ".join(f"{f.backend}: {f.error}" for f in failed))


def _threads(threads: int | None) -> int | None:
    return None if threads is None else positive_int(threads, "--threads")
