"""The nodes' JSON text of a large analysis, encoded by a forked worker while the passes after the
cost pass run (:func:`start_nodes_text`).

Encoding 200,000 node lines is 1.7 s of one core; the memory and structure passes, which change
no node, take as long on the other. The worker writes the text into an unlinked temporary file
(nothing is left behind, whatever happens to either process), and :meth:`Analysis.write_json
<mlms_ir.results.analysis.Analysis.write_json>` copies it to its output a megabyte at a time: the
text is never held whole in memory. A worker that fails costs nothing but the time it ran: the
text is then encoded here, the same bytes.
"""

from __future__ import annotations

import os
import tempfile
from typing import TextIO

from mlms_ir.ir.guard import GuardedCall, GuardedCrash, GuardedError, can_fork_worker, start_guarded
from mlms_ir.results.analysis import NodeCost, nodes_json_chunks

#: An analysis of fewer nodes encodes them itself: the fork and the copy would cost more than half
#: the encoding saves.
MIN_NODES = 20_000
#: Bytes copied at a time from the worker's file to the output.
_COPY_BYTES = 1 << 20


class NodesText:
    """:func:`~mlms_ir.results.analysis.nodes_json_chunks` of ``nodes`` at ``indent``, under way in
    a forked worker (the protocol :meth:`Analysis.attach_nodes_text
    <mlms_ir.results.analysis.Analysis.attach_nodes_text>` takes)."""

    def __init__(self, nodes: list[NodeCost], indent: int = 2) -> None:
        self.indent = indent
        self.count = len(nodes)
        self._call: GuardedCall | None = None
        self._file = tempfile.TemporaryFile()
        fd = self._file.fileno()

        def work() -> bytes:
            with os.fdopen(os.dup(fd), "wb", buffering=_COPY_BYTES) as out:  # the worker's own descriptor
                for piece in nodes_json_chunks(nodes, indent):
                    out.write(piece.encode("ascii"))  # json's ASCII escapes: the text is ASCII
            return b""

        try:
            self._call = start_guarded(work)
        except OSError:  # no process to be had: the file goes at once
            self._file.close()
            raise

    def copy_to(self, fh: TextIO) -> bool:
        """Write the worker's text to ``fh`` and return True; False, having written nothing, when
        the worker failed."""
        call, self._call = self._call, None
        if call is None:
            return False
        try:
            call.result()
        except (GuardedCrash, GuardedError):
            return False
        f = self._file
        f.seek(0)
        while chunk := f.read(_COPY_BYTES):
            fh.write(chunk.decode("ascii"))
        return True

    def close(self) -> None:
        """Stop the worker if it still runs, and drop its file."""
        call, self._call = self._call, None
        if call is not None:
            call.cancel()
        self._file.close()

    def __del__(self) -> None:  # a result dropped without being written: no worker left behind
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit, modules may be gone
            pass


def start_nodes_text(nodes: list[NodeCost], indent: int = 2) -> NodesText | None:
    """A worker encoding ``nodes``' JSON text, where one can share the work (:data:`MIN_NODES` or
    more nodes, :func:`~mlms_ir.ir.guard.can_fork_worker`) and a temporary file can be made; else
    None."""
    if len(nodes) < MIN_NODES or not can_fork_worker():
        return None
    try:
        return NodesText(nodes, indent)
    except OSError:  # no temporary file: encoded by the caller
        return None
