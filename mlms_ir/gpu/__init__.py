"""GPU measurements attributed to graph nodes.

* :mod:`mlms_ir.gpu.kernels`: the CUDA execution profile of traced runs (kernels, GPU time, idle
  gaps and launch overhead per node), from the torch backend's profiler traces.
* :mod:`mlms_ir.gpu.ncu`: hardware counters per node through Nsight Compute (``ncu``): measured
  FLOPs, DRAM bytes and SM/memory throughput beside the static counts, on the GPU's roofline.

Nothing here imports a deep-learning framework at import time.
"""
