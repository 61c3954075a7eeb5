"""Pausing Python's cyclic garbage collector while a large graph is built and analysed.

Loading and analysing a 50,000-node graph allocates millions of small objects (protos' Python
views, TensorInfos, Nodes, NodeCosts, dicts) that all stay alive; every 700 allocations the
collector walks the young ones and, as the heap grows, the whole heap again: 10% of the time
of an analysis, for nothing to free. Reference counting still frees everything acyclic while
the collector is paused; the cycles left (a Node and its Graph) are collected when it resumes.

A one-shot process (``python -m mlms_ir``) sets :data:`freeze_at_exit`: a block that is the
process' last work (``paused_gc(last=True)``: the ``analyze`` command) then ends with
``gc.freeze()``, which moves everything alive (millions of young objects, and the graph's
cycles) to the permanent generation that no collection walks. The process ends soon after;
resuming the collector otherwise costs a pass over all of them (0.3 s of the 5 s ``analyze`` of
a 50,000-node graph) to free memory nobody will use again.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: Set by ``python -m mlms_ir`` (a process that ends after its one command): an outermost
#: ``paused_gc(last=True)`` freezes what is alive instead of handing it to the collector (see the
#: module's doc). Other blocks never freeze: a process that loads many graphs must collect them.
freeze_at_exit = False


@contextmanager
def paused_gc(last: bool = False) -> Iterator[None]:
    """Turn the cyclic collector off for the block, and back on after it (nested blocks leave
    it to the outermost; a collector the caller turned off stays off). ``last``: the block is
    the last work of a command, frozen at its end where :data:`freeze_at_exit` is set."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if last and freeze_at_exit:
            gc.freeze()
        gc.enable()
