"""Pausing Python's cyclic garbage collector while a large graph is built and analysed.

Loading and analysing a 50,000-node graph allocates millions of small objects (protos' Python
views, TensorInfos, Nodes, NodeCosts, dicts) that all stay alive; every 700 allocations the
collector walks the young ones and, as the heap grows, the whole heap again: 10% of the time
of an analysis, for nothing to free. Reference counting still frees everything acyclic while
the collector is paused; the cycles left (a Node and its Graph) are collected when it resumes.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Turn the cyclic collector off for the block, and back on after it (nested blocks leave
    it to the outermost; a collector the caller turned off stays off)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
