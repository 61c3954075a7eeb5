"""The nodes' JSON text of a large analysis, encoded by a forked worker while the passes after the
cost pass run (:func:`start_nodes_text`).

Encoding 200,000 node lines is 1.7 s of one core; the memory and structure passes, which change
no node, take as long on the other. The worker writes the text into an unlinked temporary file
(nothing is left behind, whatever happens to either process), and :meth:`Analysis.write_json
<mlms_ir.results.analysis.Analysis.write_json>` copies it to its output a megabyte at a time: the
text is never held whole in memory. For the results store the worker compresses the text as
well (:class:`JsonAhead`), and :meth:`~mlms_ir.store.JsonPacker.write_deflated` takes it as it
is: the default table's analysis then keeps its JSON in the store without the process encoding or
compressing a line of it. A worker that fails costs nothing but the time it ran: the text is then
encoded here, the same bytes.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from dataclasses import dataclass
from typing import Any

from mlms_ir.ir.guard import GuardedCall, GuardedCrash, GuardedError, can_fork_worker, frame, start_guarded, unframe
from mlms_ir.results.analysis import NodeCost, nodes_json_chunks

#: An analysis of fewer nodes encodes them itself: the fork and the copy would cost more than half
#: the encoding saves.
MIN_NODES = 20_000
#: The same for an analysis whose JSON only the store wants (the default table's): the worker then
#: overlaps the table's rendering too (0.1 s), and nothing is copied back but compressed text.
MIN_PACKED_NODES = 2_000
#: Bytes copied at a time from the worker's file to the output.
_COPY_BYTES = 1 << 20


@dataclass(frozen=True)
class JsonAhead:
    """What the caller of :func:`~mlms_ir.passes.analyze.analyze` will do, once, with the result's
    JSON: write its ``text`` to an output (``--format json``), and/or compress it for the results
    store at zlib level ``deflate_level`` (:class:`~mlms_ir.store.JsonPacker`)."""

    text: bool = True
    deflate_level: int | None = None


class NodesText:
    """:func:`~mlms_ir.results.analysis.nodes_json_chunks` of ``nodes`` at ``indent``, under way in
    a forked worker (the protocol :meth:`Analysis.attach_nodes_text
    <mlms_ir.results.analysis.Analysis.attach_nodes_text>` takes): written to a temporary file
    where ``want.text``, compressed as raw deflate where ``want.deflate_level`` is set."""

    def __init__(self, nodes: list[NodeCost], indent: int = 2, want: JsonAhead = JsonAhead()) -> None:
        self.indent = indent
        self.count = len(nodes)
        self.want = want
        self._call: GuardedCall | None = None
        self._file = tempfile.TemporaryFile() if want.text else None
        fd = self._file.fileno() if self._file is not None else None
        level = want.deflate_level

        def work() -> bytes:
            out = os.fdopen(os.dup(fd), "wb", buffering=_COPY_BYTES) if fd is not None else None  # its own descriptor
            deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS) if level is not None else None
            packed: list[bytes] = []
            adler, length = zlib.adler32(b""), 0
            try:
                for piece in nodes_json_chunks(nodes, indent):
                    data = piece.encode("ascii")  # json's ASCII escapes: the text is ASCII
                    if out is not None:
                        out.write(data)
                    if deflate is not None:
                        adler, length = zlib.adler32(data, adler), length + len(data)
                        packed.append(deflate.compress(data))
            finally:
                if out is not None:
                    out.close()
            if deflate is None:
                return b""
            packed.append(deflate.flush(zlib.Z_SYNC_FLUSH))  # a byte boundary, no final block: it is joined
            return frame({"adler32": adler, "length": length}, b"".join(packed))

        try:
            self._call = start_guarded(work)
        except OSError:  # no process to be had: the file goes at once
            self.close()
            raise

    def copy_to(self, fh: Any) -> bool:
        """Write the worker's text to ``fh`` and return True; False, having written nothing, when
        the worker failed or ``fh`` wants what it was not asked for.

        A sink that has ``write_deflated`` (:meth:`~mlms_ir.store.JsonPacker.write_deflated`)
        takes the compressed text, when the worker made it; the text itself then goes to the
        sink's ``text_sink`` (None: nowhere; the command line's tee of its output and the store
        has its output there). Any other sink takes the text."""
        call, self._call = self._call, None
        if call is None:
            return False
        try:
            answer = call.result()
        except (GuardedCrash, GuardedError):
            return False
        take_deflated = getattr(fh, "write_deflated", None) if self.want.deflate_level is not None else None
        text_to = getattr(fh, "text_sink", None) if take_deflated is not None else fh
        if text_to is not None and self._file is None:
            return False
        if take_deflated is not None:
            head, data = unframe(answer)
            take_deflated(data, head["adler32"], head["length"])
        if text_to is not None:
            f = self._file
            f.seek(0)
            while chunk := f.read(_COPY_BYTES):
                text_to.write(chunk.decode("ascii"))
        return True

    def close(self) -> None:
        """Stop the worker if it still runs, and drop its file."""
        call, self._call = self._call, None
        if call is not None:
            call.cancel()
        if self._file is not None:
            self._file.close()

    def __del__(self) -> None:  # a result dropped without being written: no worker left behind
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit, modules may be gone
            pass


def start_nodes_text(nodes: list[NodeCost], indent: int = 2, want: JsonAhead = JsonAhead()) -> NodesText | None:
    """A worker encoding ``nodes``' JSON text for what the caller ``want`` s, where one can share
    the work (:data:`MIN_NODES` or more nodes, :data:`MIN_PACKED_NODES` for compressed text only;
    :func:`~mlms_ir.ir.guard.can_fork_worker`) and a temporary file can be made; else None."""
    if not (want.text or want.deflate_level is not None):
        return None
    if len(nodes) < (MIN_NODES if want.text else MIN_PACKED_NODES) or not can_fork_worker():
        return None
    try:
        return NodesText(nodes, indent, want)
    except OSError:  # no temporary file: encoded by the caller
        return None
