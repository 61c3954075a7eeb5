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
import threading
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


def _statm_bytes(field: int) -> int:
    """A size of this process from ``/proc/self/statm`` (0: virtual, 1: resident), in bytes; 0
    where /proc is not there."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[field]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _address_space_bytes() -> int:
    """This process' virtual size (0 where /proc is not there)."""
    return _statm_bytes(0)


def _answer(payload: bytes) -> bytes:
    """What a guarded call's answer says: ``K`` and the bytes it returned, ``E`` and the exception it
    raised (as :class:`GuardedError`), ``C`` and why it crashed (as :class:`GuardedCrash`: the
    guard server's word for its child's death)."""
    kind, body = payload[:1], payload[1:]
    if kind == b"K":
        return body
    if kind == b"C":
        raise GuardedCrash(body.decode("utf-8", "replace"))
    type_name, _, message = body.decode("utf-8", "replace").partition("\0")
    raise GuardedError(type_name, message)


def _error(type_name: str, message: object) -> bytes:
    """The ``E`` answer of a call that raised (read back by :func:`_answer`)."""
    return b"E" + f"{type_name}\0{message}".encode("utf-8", "replace")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def can_fork_worker() -> bool:
    """Whether a forked worker can share this process' work: ``fork`` exists, this process runs no
    other thread (a lock another thread holds would stay held in the child for good) and may use
    two CPUs or more."""
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return False
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return cpus >= 2


def run_guarded(fn: Callable[[], bytes], *, timeout_s: float = DEFAULT_TIMEOUT_S, memory_bytes: int | None = None) -> bytes:
    """``fn()`` (which returns bytes) in a forked child under ``memory_bytes`` of address space
    (default :func:`memory_limit_bytes`) and ``timeout_s`` seconds.

    Raises :class:`GuardedError` when ``fn`` raised, :class:`GuardedCrash` when the child died or
    ran out of time or memory."""
    return start_guarded(fn, timeout_s=timeout_s, memory_bytes=memory_bytes).result()


class GuardedCall:
    """A guarded call under way in a forked child (:func:`start_guarded`): this process goes on
    with other work meanwhile and takes the answer with :meth:`result`, or stops the child with
    :meth:`cancel`. Also the already-finished answer of a call that ran without a child."""

    def __init__(self, pid: int | None = None, fd: int | None = None, deadline: float = 0.0, timeout_s: float = 0.0,
                 answer: bytes | None = None, error: BaseException | None = None) -> None:
        self._pid, self._fd, self._deadline, self._timeout_s = pid, fd, deadline, timeout_s
        self._answer, self._error = answer, error

    @classmethod
    def done(cls, work: Callable[[], bytes]) -> GuardedCall:
        """The call made here and now (no child): its answer, or what it raised, kept for :meth:`result`."""
        try:
            return cls(answer=work())
        except (GuardedCrash, GuardedError) as exc:
            return cls(error=exc)

    def result(self) -> bytes:
        """The child's answer, waiting for it; raises :class:`GuardedError` when the work raised,
        :class:`GuardedCrash` when the child died or ran out of time or memory."""
        if self._pid is None:
            if self._error is not None:
                raise self._error
            assert self._answer is not None
            return self._answer
        pid, r = self._pid, self._fd
        self._pid = self._fd = None
        chunks: list[bytes] = []
        try:
            while True:
                left = self._deadline - time.monotonic()
                if left <= 0:  # stopped and reaped below, once (a reaped pid may be another process' soon)
                    raise GuardedCrash(f"it ran past {self._timeout_s:g} s and was stopped")
                ready, _, _ = select.select([r], [], [], min(left, 1.0))
                if ready:
                    chunk = os.read(r, 1 << 20)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except BaseException:
            _kill(pid)
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
        return _answer(data[8:8 + n])

    def cancel(self) -> None:
        """Stop the child, if it still runs (its answer is no longer wanted)."""
        if self._pid is not None:
            pid, r = self._pid, self._fd
            self._pid = self._fd = None
            _kill(pid)
            os.close(r)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def start_guarded(fn: Callable[[], bytes], *, timeout_s: float = DEFAULT_TIMEOUT_S, memory_bytes: int | None = None) -> GuardedCall:
    """:func:`run_guarded`'s child, started: ``fn`` runs there while this process goes on; the
    :class:`GuardedCall` gives its answer. Where ``fork`` does not exist the call is made here,
    before this returns."""
    if not hasattr(os, "fork"):
        return GuardedCall(answer=fn())
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
                payload = _error("MemoryError", "")
            except BaseException as exc:  # noqa: BLE001 - everything goes back as text
                payload = _error(type(exc).__name__, exc)
            _write_all(w, struct.pack("<Q", len(payload)) + payload)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    return GuardedCall(pid, r, time.monotonic() + timeout_s, timeout_s)


# -- the guard server: cheap guarded calls from a large process ------------------------------------
#
# ``fork`` copies the parent's page tables: a few milliseconds from a lean process, but 40-50 ms
# from one that has loaded PyTorch and TensorFlow (measured on the 2-core machine: 236 of ONNX's
# node cases analysed in 12.5 s there, 2.9 s without them, nearly all of it system time in fork).
# A long-lived process that analyses many models (a notebook, a sweep worker, the test suite)
# therefore hands its guarded calls to a small server process of its own, started once (about
# 0.7 s: it imports onnx and mlms_ir.ir), which forks each call's child from itself. The child,
# its memory limit and its deadline are the same; only the parent that forks is smaller.

#: A process whose resident size is above this forks slowly enough that a server pays off.
SERVER_MIN_RSS_BYTES = 384 << 20
#: ... once it has made this many guarded calls (a one-model command never starts one).
SERVER_AFTER_CALLS = 4

#: Functions a server runs by name: ``name -> "module:function"``, each taking and returning bytes.
SERVER_TARGETS = {"infer_shapes": "mlms_ir.ir.shapes:infer_request"}
#: What a server runs once at its start, in itself (on models of its own): lazy imports, caches.
SERVER_WARM_UP = ("mlms_ir.ir.shapes:warm_up",)


class _Server:
    """One server process of this process (never shared with a forked child of it)."""

    def __init__(self) -> None:
        import subprocess
        import sys

        self.pid = os.getpid()
        self.proc = subprocess.Popen([sys.executable, "-c", "from mlms_ir.ir.guard import serve; serve()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     close_fds=True, env=dict(os.environ, PYTHONPATH=_package_root_path()))

    def call(self, target: str, data: bytes, timeout_s: float, memory_bytes: int | None) -> bytes:
        head = json.dumps({"target": target, "timeout_s": timeout_s, "memory_bytes": memory_bytes}).encode()
        request = struct.pack("<QQ", len(head), len(data)) + head + data
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(request)
        self.proc.stdin.flush()
        out = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s + 30.0
        answer = b""
        need = 8
        while len(answer) < need:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _ServerBroken("the guard server did not answer")
            ready, _, _ = select.select([out], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(out, max(need - len(answer), 1 << 20))
                if not chunk:
                    raise _ServerBroken("the guard server ended")
                answer += chunk
                if need == 8 and len(answer) >= 8:
                    need = 8 + struct.unpack("<Q", answer[:8])[0]
        return _answer(answer[8:need])

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=2)
        except Exception:  # noqa: BLE001 - it goes anyway
            self.proc.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class _ServerBroken(Exception):
    pass


_server: _Server | None = None
_server_failed = False
_calls = 0
_server_lock = threading.Lock()


def _package_root_path() -> str:
    """PYTHONPATH for the server: the folder holding this ``mlms_ir`` first, then the caller's."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rest = os.environ.get("PYTHONPATH")
    return here + (os.pathsep + rest if rest else "")


def call_guarded(target: str, data: Callable[[], bytes], work: Callable[[], bytes], *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 memory_bytes: int | None = None) -> bytes:
    """``work()`` guarded as :func:`run_guarded` does; ``target`` (a name in :data:`SERVER_TARGETS`)
    applied to the bytes ``data()`` returns is the same work, which a large process hands to its guard server instead
    of forking itself. Raises what :func:`run_guarded` raises."""
    return start_call_guarded(target, data, work, timeout_s=timeout_s, memory_bytes=memory_bytes).result()


def start_call_guarded(target: str, data: Callable[[], bytes], work: Callable[[], bytes], *,
                       timeout_s: float = DEFAULT_TIMEOUT_S, memory_bytes: int | None = None) -> GuardedCall:
    """:func:`call_guarded`, started: a forked child works while this process goes on (see
    :func:`start_guarded`); a call handed to the guard server is answered before this returns."""
    global _server, _server_failed, _calls

    _calls += 1
    if memory_bytes is None:
        memory_bytes = memory_limit_bytes()
    if _server is not None and _server.pid != os.getpid():
        _server = None  # a forked child of the process that started it: not ours to talk to
    if _server is None and (_server_failed or not hasattr(os, "fork") or _calls <= SERVER_AFTER_CALLS
                            or _statm_bytes(1) < SERVER_MIN_RSS_BYTES):
        return start_guarded(work, timeout_s=timeout_s, memory_bytes=memory_bytes)
    if not _server_lock.acquire(blocking=False):  # another thread is using it: fork as before
        return start_guarded(work, timeout_s=timeout_s, memory_bytes=memory_bytes)
    try:
        if _server is None:
            try:
                _server = _Server()
                import atexit

                atexit.register(_server.close)
            except OSError:
                _server_failed = True
                return start_guarded(work, timeout_s=timeout_s, memory_bytes=memory_bytes)
        try:
            request = data()
        except ValueError:  # a proto too large to serialize (2 GiB): fork as before
            return start_guarded(work, timeout_s=timeout_s, memory_bytes=memory_bytes)
        try:
            server = _server
            return GuardedCall.done(lambda: server.call(target, request, timeout_s, memory_bytes))
        except (_ServerBroken, OSError, struct.error):
            # the server itself went wrong (it never runs the work): this call and later ones fork
            import logging

            logging.getLogger(__name__).debug("guard server failed; forking from now on", exc_info=True)
            _server.proc.kill()
            _server.close()
            _server, _server_failed = None, True
            return start_guarded(work, timeout_s=timeout_s, memory_bytes=memory_bytes)
    finally:
        _server_lock.release()


def serve() -> None:
    """The guard server's loop: read a request (a target of :data:`SERVER_TARGETS` and its bytes)
    from stdin, run it in a guarded child of this process, write the answer to stdout; end at EOF."""
    import importlib
    import sys

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    for where in SERVER_WARM_UP:
        module, _, name = where.partition(":")
        try:
            getattr(importlib.import_module(module), name)()
        except Exception:  # noqa: BLE001 - a cold child is slower, not wrong
            pass
    while True:
        sizes = stdin.read(16)
        if len(sizes) < 16:
            return
        n_head, n_data = struct.unpack("<QQ", sizes)
        head = json.loads(stdin.read(n_head))
        data = stdin.read(n_data)
        try:
            module, _, name = SERVER_TARGETS[head["target"]].partition(":")
            fn = getattr(importlib.import_module(module), name)
            answer = b"K" + run_guarded(lambda: fn(data), timeout_s=float(head["timeout_s"]), memory_bytes=head["memory_bytes"])
        except GuardedCrash as exc:
            answer = b"C" + str(exc).encode("utf-8", "replace")
        except GuardedError as exc:
            answer = _error(exc.type_name, exc.message)
        except Exception as exc:  # noqa: BLE001 - the server goes on
            answer = _error(type(exc).__name__, exc)
        stdout.write(struct.pack("<Q", len(answer)) + answer)
        stdout.flush()
