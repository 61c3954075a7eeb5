"""GPU measurements attributed to graph nodes.

* :mod:`mlms_ir.gpu.kernels`: the CUDA execution profile of traced runs (kernels, GPU time, idle
  gaps and launch overhead per node), from the torch backend's profiler traces.
* Hardware counters per node through Nsight Compute (``ncu``): measured FLOPs, DRAM bytes and
  SM/memory throughput beside the static counts, on the GPU's roofline.
  :mod:`mlms_ir.gpu.ncu_run` runs the model under ncu (:func:`~mlms_ir.gpu.ncu_run.run_counters`)
  in the child process of :mod:`mlms_ir.gpu.ncu`; :mod:`mlms_ir.gpu.ncu_metrics` names the metric
  sets, :mod:`mlms_ir.gpu.ncu_command` finds ncu and builds its command line,
  :mod:`mlms_ir.gpu.ncu_parse` reads its CSV and :mod:`mlms_ir.gpu.counters_attribution` sums
  the kernels per node into a :class:`~mlms_ir.results.counters.CountersReport`.

Nothing here imports a deep-learning framework at import time.
"""
