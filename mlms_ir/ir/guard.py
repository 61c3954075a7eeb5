"""ONNX's C++ code on untrusted models, in a forked child: a crash or a runaway costs an error line,
never the process.

ONNX's shape inference is C++ that trusts the model: onnx 1.23 segfaults on a GatherND whose
``batch_dims`` is ``-2**31`` (a 150-byte file), and a Slice with ``axes`` ``[1, 2**40]`` spends a
minute and gigabytes in it. :func:`run_guarded` runs such a call in a child made by ``fork`` (no
re-import: a few milliseconds), with an address-space limit and a deadline. The child sends back
bytes (a serialized ``ModelProto``, never a pickle) or an error message; a child killed by a
signal, by the memory limit or by the deadline becomes :class:`GuardedCrash`.

Where ``fork`` does not exist (Windows) the call runs in this process, unguarded.
"""

from __future__ import annotations

import faulthandler
import gc
import json
import os
import resource
import select
import signal
import struct
import time
from collections.abc import Callable

#: Seconds ONNX's inference may take on one model before it is stopped.
DEFAULT_TIMEOUT_S = 600.0


class GuardedCrash(Exception):
    """The guarded call died (a signal: a segfault, the memory limit) or ran past its deadline."""


class GuardedError(Exception):
    """The guarded call raised; the message is the child's exception as ``Type: text``."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message


def memory_limit_bytes() -> int | None:
    """The memory budget: ``$MLMS_IR_MAX_MEMORY`` (bytes, or with a K/M/G/T suffix), else three
    quarters of the memory available now (``MemAvailable``: on a machine busy with other work, a
    share of its total would let the kernel's OOM killer pick a victim first), at most three
    quarters of the machine's; None when unknown."""
    env = os.environ.get("MLMS_IR_MAX_MEMORY")
    if env:
        return parse_bytes(env)
    shares = []
    try:
        shares.append(int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 3 // 4))
    except (ValueError, OSError, AttributeError):
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    shares.append(int(line.split()[1]) * 1024 * 3 // 4)
                    break
    except (OSError, ValueError, IndexError):
        pass
    return min(shares) if shares else None


def check_allocation(what: str, nbytes: int) -> None:
    """Raise :class:`~mlms_ir.errors.MemoryBudgetError` before allocating ``nbytes`` for ``what``
    when that exceeds the memory budget (:func:`memory_limit_bytes`)."""
    from mlms_ir.errors import MemoryBudgetError

    budget = memory_limit_bytes()
    if budget is not None and nbytes > budget:
        raise MemoryBudgetError(f"{what} would take {_size(nbytes)}, more than the memory budget of "
                                f"{_size(budget)} (--max-memory or $MLMS_IR_MAX_MEMORY sets it)")


def _size(n: int) -> str:
    """``n`` bytes in binary units, three significant digits (``12,288 GiB``, ``32.0 MiB``)."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            v = n / scale
            return f"{v:,.0f} {unit}" if v >= 100 else f"{v:.3g} {unit}"
    return f"{n} B"


def parse_bytes(text: str) -> int:
    """``"8G"`` -> 8 * 2**30; a plain number is bytes. Raises ValueError on anything else."""
    t = str(text).strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(t[-1:], 1)
    value = float(t[:-1] if scale > 1 else t)
    if not value > 0:
        raise ValueError(f"a memory size must be positive, not '{text}'")
    return int(value * scale)


def frame(head: object, body: bytes = b"") -> bytes:
    """A guarded call's answer of two parts: ``head`` as JSON (warnings, options, a layout) and
    ``body`` as bytes (a serialized model, an ``.npz``). :func:`unframe` reads it back."""
    text = json.dumps(head, default=str).encode()
    return struct.pack("<Q", len(text)) + text + body


def unframe(data: bytes) -> tuple[object, bytes]:
    """The (head, body) of what :func:`frame` wrote."""
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def _address_space_bytes() -> int:
    """This process' virtual size (0 where /proc is not there)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def run_guarded(fn: Callable[[], bytes], *, timeout_s: float = DEFAULT_TIMEOUT_S, memory_bytes: int | None = None) -> bytes:
    """``fn()`` (which returns bytes) in a forked child under ``memory_bytes`` of address space
    (default :func:`memory_limit_bytes`) and ``timeout_s`` seconds.

    Raises :class:`GuardedError` when ``fn`` raised, :class:`GuardedCrash` when the child died or
    ran out of time or memory."""
    if not hasattr(os, "fork"):
        return fn()
    budget = memory_limit_bytes() if memory_bytes is None else memory_bytes
    # the child starts with this process' address space (a framework may have reserved a lot of
    # it without touching it): the budget is on top of that
    limit = _address_space_bytes() + budget if budget else None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(r)
            # the child never collects what it inherited: an object of the parent's (an onnxruntime
            # session left in a reference cycle) whose destructor waits on the parent's threads,
            # which are not here, would hang it for good
            gc.freeze()
            faulthandler.disable()  # a crash here is expected and answered by the parent: no dump
            if limit:
                try:
                    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
                except (ValueError, OSError):
                    pass
            try:
                payload = b"K" + fn()
            except MemoryError:
                payload = b"EMemoryError\0"
            except BaseException as exc:  # noqa: BLE001 - everything goes back as text
                payload = b"E" + f"{type(exc).__name__}\0{exc}".encode("utf-8", "replace")
            _write_all(w, struct.pack("<Q", len(payload)) + payload)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise GuardedCrash(f"it ran past {timeout_s:g} s and was stopped")
            ready, _, _ = select.select([r], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(r, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
    except BaseException:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        raise
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        raise GuardedCrash(f"it crashed ({name})" + (" (out of memory?)" if sig in (signal.SIGKILL, signal.SIGABRT) else ""))
    if len(data) < 9:
        raise GuardedCrash("it ended without an answer (out of memory?)")
    (n,) = struct.unpack("<Q", data[:8])
    payload = data[8:8 + n]
    if payload[:1] == b"K":
        return payload[1:]
    type_name, _, message = payload[1:].decode("utf-8", "replace").partition("\0")
    raise GuardedError(type_name, message)
