"""Executors: one interface to run many independent scenario tasks, serially or in parallel.

Extensive form, progressive hedging, SPAR and out-of-sample evaluation all solve many
independent scenario subproblems. Building a subproblem model is the expensive part, so every
executor supports **build once, re-solve many**: a *state factory* (a picklable zero-argument
callable, typically a :func:`functools.partial` of a module-level builder) is called once per
worker, the state it returns (e.g. a built model) is cached in the worker process, and every task
that runs on that worker receives it::

    def build(feeder_path):                 # expensive, once per worker
        return SubproblemModel(feeder_path)

    def solve(model, scenario):             # cheap, once per task
        return model.solve(scenario)

    with make_executor(ExecutorKind.PROCESS, n_workers=4) as ex:
        for iteration in range(50):         # the cached models survive across map() calls
            results = ex.map(solve, scenarios, state_factory=partial(build, path), desc="PH")

State cache semantics
---------------------
* The cache key (*token*) is the SHA-256 of the pickled factory, so an equal factory (same
  function, equal arguments) reuses the cached state across :meth:`Executor.map` calls, and a
  factory with different arguments builds a new state. If a factory reads files that may change,
  pass something that identifies their version (e.g. the modification time) as an argument.
* A "worker" is one execution slot: a process of :class:`ProcessPoolExecutor`, a worker thread
  of :class:`DaskExecutor` (one per worker process with the default ``threads_per_worker=1``),
  the calling thread of :class:`InProcessExecutor`. The state is never shared between threads,
  so ``fn`` may mutate it (e.g. update a PH objective) without locking.
* Each process keeps the states of at most :data:`STATE_CACHE_MAX_TOKENS` tokens (least recently
  used first out); :func:`clear_state_cache` empties the cache of the calling process.

``fn`` and every item are pickled for each chunk of tasks, so keep them light (a scenario index
or a small array) and put everything heavy in the state. The process pool sends the pickled
factory with the first chunk of each worker only (a worker that has no state for the token
asks for it, and the chunk is sent again with it): a 1200-task map over cached ieee9500 models
(a 30 MB factory) takes 0.3 s instead of 3 s.
"""

from __future__ import annotations

import concurrent.futures as cf
import enum
import hashlib
import math
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType
from typing import Any, Protocol, TextIO, TypeVar, runtime_checkable

from gridrecourse.errors import GridRecourseError

__all__ = [
    "STATE_CACHE_MAX_TOKENS",
    "DaskExecutor",
    "Executor",
    "ExecutorClosedError",
    "ExecutorConfigError",
    "ExecutorKind",
    "InProcessExecutor",
    "ProcessPoolExecutor",
    "ProgressCallback",
    "StateFactory",
    "TaskFailedError",
    "clear_state_cache",
    "make_executor",
    "state_token",
]

#: ``progress(done, total)``: called after every completed chunk with the number of finished
#: tasks and the total number of tasks of the current :meth:`Executor.map` call.
ProgressCallback = Callable[[int, int], None]
#: A zero-argument callable returning the per-worker state (must be picklable for the parallel
#: executors: a module-level function or a :func:`functools.partial` of one).
StateFactory = Callable[[], Any]

#: Number of distinct state-factory tokens whose states a process keeps (LRU eviction).
STATE_CACHE_MAX_TOKENS = 4
#: Factory payloads larger than this are scattered once to the Dask workers instead of being
#: shipped with every chunk (bytes).
_DASK_SCATTER_THRESHOLD = 64 * 1024
#: Default number of chunks per worker: enough to balance uneven task durations, few enough to
#: keep the per-chunk overhead (pickling ``fn``, one round trip) small.
_CHUNKS_PER_WORKER = 4
#: Longest item representation quoted in an error message (characters).
_MAX_ITEM_REPR = 120


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
class TaskFailedError(GridRecourseError, RuntimeError):
    """A task (or the state factory preparing it) raised; the original error is the cause.

    Attributes
    ----------
    index : int or None
        Position of the failing item in the ``items`` passed to :meth:`Executor.map`.
    desc : str or None
        The ``desc`` of the :meth:`Executor.map` call.
    remote_traceback : str or None
        Formatted traceback from the worker process, when the task ran in another process.
    """

    def __init__(
        self,
        message: str,
        index: int | None = None,
        desc: str | None = None,
        remote_traceback: str | None = None,
    ):
        super().__init__(message)
        self.index = index
        self.desc = desc
        self.remote_traceback = remote_traceback


class ExecutorConfigError(GridRecourseError, ValueError):
    """An executor was configured or called with invalid arguments."""


class ExecutorClosedError(GridRecourseError, RuntimeError):
    """:meth:`Executor.map` was called after :meth:`Executor.close`."""


class _ChunkFailure(Exception):
    """Raised in a worker: item ``index`` failed; carries a picklable error and its traceback."""

    def __init__(self, index: int, error: BaseException, tb_text: str, in_factory: bool):
        super().__init__(index, error, tb_text, in_factory)
        self.index = index
        self.error = error
        self.tb_text = tb_text
        self.in_factory = in_factory


class _RemoteTraceback(Exception):
    """Holds a worker traceback so that it prints in the caller's exception chain."""

    def __init__(self, tb_text: str):
        super().__init__(tb_text)
        self.tb_text = tb_text

    def __str__(self) -> str:
        return f'\n"""\n{self.tb_text}"""'


class _UnpicklableTaskError(Exception):
    """Stands in for a worker exception that cannot be pickled back to the caller."""


def _portable(exc: BaseException) -> tuple[BaseException, str]:
    """The exception (or a picklable stand-in) and its formatted traceback."""
    tb_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return _UnpicklableTaskError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"), (
            tb_text
        )
    return exc, tb_text


def _item_repr(item: Any) -> str:
    try:
        text = repr(item)
    except Exception:
        text = f"<{type(item).__name__}>"
    return text if len(text) <= _MAX_ITEM_REPR else text[: _MAX_ITEM_REPR - 3] + "..."


def _failure_message(
    error: BaseException,
    index: int,
    total: int,
    item: Any,
    desc: str | None,
    in_factory: bool,
) -> str:
    where = f" ({desc})" if desc else ""
    what = (
        f"state_factory raised in the worker preparing task {index} of {total}{where}"
        if in_factory
        else f"task {index} of {total}{where} failed"
    )
    return f"{what}: {type(error).__name__}: {error} [item {index} = {_item_repr(item)}]"


def _task_failed_from(
    failure: _ChunkFailure, items: Sequence[Any], desc: str | None
) -> TaskFailedError:
    """Build the caller-side :class:`TaskFailedError` for a failure raised in another process."""
    error = failure.error
    if error.__traceback__ is None and error.__cause__ is None:
        # the worker traceback did not survive pickling: show it as the error's cause
        error.__cause__ = _RemoteTraceback(failure.tb_text)
    message = _failure_message(
        error, failure.index, len(items), items[failure.index], desc, failure.in_factory
    )
    return TaskFailedError(
        message, index=failure.index, desc=desc, remote_traceback=failure.tb_text
    )


# --------------------------------------------------------------------------------------------
# Worker-side state cache
# --------------------------------------------------------------------------------------------
_STATE_CACHE: OrderedDict[str, dict[int, Any]] = OrderedDict()
_STATE_CACHE_LOCK = threading.Lock()


def clear_state_cache() -> None:
    """Drop every cached worker state of the calling process."""
    with _STATE_CACHE_LOCK:
        _STATE_CACHE.clear()


def state_token(state_factory: StateFactory) -> str:
    """The cache token of a state factory: SHA-256 (hex) of its pickle.

    Raises
    ------
    ExecutorConfigError
        The factory cannot be pickled (a lambda, a local function, a bound method of an
        unpicklable object); use a module-level function or a :func:`functools.partial` of one.
    """
    return _factory_token(state_factory)[0]


def _factory_token(state_factory: StateFactory) -> tuple[str, bytes]:
    if not callable(state_factory):
        raise ExecutorConfigError(
            f"state_factory must be a zero-argument callable, got {type(state_factory).__name__}"
        )
    try:
        payload = pickle.dumps(state_factory, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise ExecutorConfigError(
            f"state_factory {state_factory!r} cannot be pickled ({exc}); use a module-level "
            "function or a functools.partial of one"
        ) from exc
    return hashlib.sha256(payload).hexdigest(), payload


def _cached_state(
    cache: OrderedDict[str, dict[int, Any]],
    lock: threading.Lock,
    token: str,
    load_factory: Callable[[], StateFactory],
) -> Any:
    """State for (token, current thread): from ``cache``, else built once and stored."""
    thread = threading.get_ident()
    with lock:
        per_thread = cache.get(token)
        if per_thread is not None:
            cache.move_to_end(token)
            if thread in per_thread:
                return per_thread[thread]
    state = load_factory()()  # outside the lock: building may take long
    with lock:
        cache.setdefault(token, {})[thread] = state
        cache.move_to_end(token)
        while len(cache) > STATE_CACHE_MAX_TOKENS:
            cache.popitem(last=False)
    return state


class _StateNeeded:
    """Returned by a worker that got a chunk without the factory payload and has no state for
    its token (never built here, or evicted): the caller resubmits the chunk with it."""


def _has_state(token: str) -> bool:
    with _STATE_CACHE_LOCK:
        return threading.get_ident() in _STATE_CACHE.get(token, {})


def _leave_interrupts_to_the_parent() -> None:
    """Worker initializer: ignore SIGINT and SIGTERM.

    A Ctrl-C in a terminal reaches the whole process group; the workers would each print a
    ``KeyboardInterrupt`` traceback. The parent handles the signal (the CLI ends with one line
    and exit 130/143) and kills its workers (:meth:`ProcessPoolExecutor._kill_workers`).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _run_chunk(
    fn: Callable[..., Any],
    items: Sequence[Any],
    start: int,
    token: str | None,
    payload: bytes | None,
) -> list[Any] | _StateNeeded:
    """Worker entry point: run ``fn`` on ``items`` (global indices ``start, start + 1, ...``).

    ``payload`` (the pickled state factory) may be ``None`` when the caller expects this worker
    to hold the state already; if it does not, nothing runs and :class:`_StateNeeded` is
    returned.
    """
    state = None
    if token is not None:
        if payload is None and not _has_state(token):
            return _StateNeeded()
        try:
            state = _cached_state(
                _STATE_CACHE, _STATE_CACHE_LOCK, token, lambda: pickle.loads(payload)
            )
        except Exception as exc:
            raise _ChunkFailure(start, *_portable(exc), in_factory=True) from None
    out = []
    for offset, item in enumerate(items):
        try:
            out.append(fn(item) if token is None else fn(state, item))
        except Exception as exc:
            raise _ChunkFailure(start + offset, *_portable(exc), in_factory=False) from None
    return out


# --------------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------------
class _Progress:
    """Calls ``callback(done, total)``; else, when ``desc`` is given, writes a stderr line.

    On a terminal the line is rewritten in place; otherwise (logs, CI) one line is written per
    completed tenth of the tasks, so at most about ten lines per call.
    """

    def __init__(
        self,
        total: int,
        desc: str | None,
        callback: ProgressCallback | None,
        stream: TextIO | None = None,
    ):
        self.total = total
        self.done = 0
        self.desc = desc
        self.callback = callback
        self.stream = (stream or sys.stderr) if (desc and callback is None) else None
        self.tty = bool(self.stream is not None and getattr(self.stream, "isatty", bool)())
        self.t0 = time.perf_counter()
        self._last_decile = -1
        self._wrote = False

    def update(self, n_done: int) -> None:
        self.done += n_done
        if self.callback is not None:
            self.callback(self.done, self.total)
        if self.stream is None:
            return
        decile = (10 * self.done) // self.total
        if not self.tty and decile == self._last_decile:
            return
        self._last_decile = decile
        line = f"{self.desc}: {self.done}/{self.total} [{time.perf_counter() - self.t0:.1f} s]"
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()
        self._wrote = True

    def close(self) -> None:
        if self.stream is not None and self.tty and self._wrote:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------------------------
@runtime_checkable
class Executor(Protocol):
    """Runs ``fn`` over ``items`` and returns the results in the order of ``items``."""

    @property
    def n_workers(self) -> int:
        """Number of tasks that can run at the same time (execution slots)."""
        ...

    def map(
        self,
        fn: Callable[..., Any],
        items: Iterable[Any],
        *,
        state_factory: StateFactory | None = None,
        desc: str | None = None,
        progress: ProgressCallback | None = None,
        lanes: Sequence[Sequence[tuple[int, int]]] | None = None,
    ) -> list[Any]:
        """Apply ``fn`` to every item; results in the order of ``items``.

        Parameters
        ----------
        fn : callable
            ``fn(item)``, or ``fn(state, item)`` when ``state_factory`` is given. Must be
            picklable for the parallel executors (a module-level function).
        items : iterable
            The task inputs (materialized into a list).
        state_factory : callable, optional
            Zero-argument callable building the per-worker state; called once per
            (worker, factory token), see the module docstring.
        desc : str, optional
            Label of the call in progress output and error messages. When given and
            ``progress`` is not, a progress line is written to stderr.
        progress : callable, optional
            ``progress(done, total)`` called after each completed chunk.
        lanes : sequence of sequences of (int, int), optional
            Explicit chunks grouped in *lanes*: each chunk a ``[start, stop)`` range of
            ``items``, all chunks together a partition of ``range(len(items))``, each lane
            chunks meant to run one after the other on one worker (e.g. consecutive parts of a
            warm-start chain). A chunk always runs on one worker in item order. The process
            pool keeps one chunk per worker in flight and gives a worker that finished a chunk
            the next chunk of its lane; when its lane is empty, it takes over the back half of
            the lane with the most items left (work stealing), so the load balances at the
            granularity of a chunk and a lane is broken only by a steal. The Dask executor
            submits the chunks round-robin over the lanes; the in-process executor (one worker)
            runs the items in order. Default: contiguous chunks in item order (``chunksize``).

        Returns
        -------
        list
            ``[fn(items[0]), fn(items[1]), ...]``.

        Raises
        ------
        TaskFailedError
            A task or the state factory raised; ``index`` is the failing item's position and
            the original exception is chained as ``__cause__``.
        """
        ...

    def close(self) -> None:
        """Release the workers (idempotent)."""
        ...

    def __enter__(self) -> Executor: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


_E = TypeVar("_E", bound="_ExecutorBase")


class _ExecutorBase:
    """Context-manager plumbing shared by the executors."""

    _closed: bool = False

    def __enter__(self: _E) -> _E:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise ExecutorClosedError(f"{type(self).__name__}.map() called after close()")


def _default_n_workers() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _resolve_n_workers(n_workers: int | None) -> int:
    if n_workers is None:
        return _default_n_workers()
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ExecutorConfigError(f"n_workers must be a positive integer, got {n_workers!r}")
    return n_workers


def _check_chunksize(chunksize: int | None) -> int | None:
    if chunksize is not None and (
        isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1
    ):
        raise ExecutorConfigError(f"chunksize must be a positive integer, got {chunksize!r}")
    return chunksize


def _chunk_bounds(n_items: int, n_workers: int, chunksize: int | None) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` chunks covering ``range(n_items)``."""
    size = chunksize or max(1, math.ceil(n_items / (_CHUNKS_PER_WORKER * n_workers)))
    return [(a, min(a + size, n_items)) for a in range(0, n_items, size)]


def _check_lanes(
    lanes: Sequence[Sequence[tuple[int, int]]] | None, n_items: int
) -> list[list[tuple[int, int]]] | None:
    """Validate lanes of chunks: ``[start, stop)`` ranges that partition ``range(n_items)``."""
    if lanes is None:
        return None
    message = (
        f"lanes must hold (start, stop) chunks that partition range({n_items}) into non-empty "
        f"ranges; got {lanes!r}"
    )
    try:
        out = [[(int(a), int(b)) for a, b in lane] for lane in lanes]
    except (TypeError, ValueError) as exc:
        raise ExecutorConfigError(message) from exc
    expected_start = 0
    for a, b in sorted(chunk for lane in out for chunk in lane):
        if a != expected_start or b <= a:
            raise ExecutorConfigError(message)
        expected_start = b
    if expected_start != n_items:
        raise ExecutorConfigError(message)
    return [lane for lane in out if lane]


class _LaneScheduler:
    """Which chunk a worker runs next: its own lane's next chunk, else a stolen back half.

    Parameters
    ----------
    lanes : list of list of (int, int)
        Chunks per lane, in the order each lane runs them.
    """

    def __init__(self, lanes: list[list[tuple[int, int]]]):
        self.lanes = [list(lane) for lane in lanes]

    def _left(self, lane: int) -> int:
        return sum(b - a for a, b in self.lanes[lane])

    def start(self, n_workers: int) -> list[tuple[int, tuple[int, int]]]:
        """The first chunk of the first ``n_workers`` lanes, as ``(lane, chunk)``."""
        out = []
        for lane in range(min(n_workers, len(self.lanes))):
            nxt = self.next(lane)
            if nxt is not None:
                out.append(nxt)
        return out

    def next(self, lane: int) -> tuple[int, tuple[int, int]] | None:
        """The next chunk for the worker that ran ``lane`` (``None``: nothing left anywhere).

        An empty lane takes over the back half (in items, at least one chunk) of the lane with
        the most items left; that lane's owner keeps the front half and runs on undisturbed.
        """
        if not self.lanes[lane]:
            victim = max(range(len(self.lanes)), key=self._left)
            chunks = self.lanes[victim]
            if not chunks:
                return None
            total, before, keep = self._left(victim), 0, 0
            while (
                keep < len(chunks) - 1 and 2 * (before + chunks[keep][1] - chunks[keep][0]) <= total
            ):
                before += chunks[keep][1] - chunks[keep][0]
                keep += 1
            self.lanes[lane], self.lanes[victim] = chunks[keep:], chunks[:keep]
        return lane, self.lanes[lane].pop(0)


def _check_picklable(fn: Callable[..., Any]) -> None:
    try:
        pickle.dumps(fn)
    except Exception as exc:
        raise ExecutorConfigError(
            f"fn {fn!r} cannot be pickled ({exc}); the parallel executors need a module-level "
            "function (or a functools.partial of one)"
        ) from exc


def _round_robin(lanes: list[list[tuple[int, int]]]) -> list[tuple[int, int]]:
    """The chunks of the lanes listed round-robin (lane 0 chunk 0, lane 1 chunk 0, ...)."""
    out = []
    for k in range(max((len(lane) for lane in lanes), default=0)):
        out.extend(lane[k] for lane in lanes if k < len(lane))
    return out


class InProcessExecutor(_ExecutorBase):
    """Runs the tasks one after the other in the calling thread (tests, debugging, profiling).

    The state of a picklable factory is cached on the executor (same token rules as the
    parallel executors) until :meth:`close`; the state of an unpicklable factory (e.g. a lambda)
    is built once per :meth:`map` call. Exceptions keep their original traceback.
    """

    def __init__(self) -> None:
        self._cache: OrderedDict[str, dict[int, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def n_workers(self) -> int:
        """Always 1."""
        return 1

    def map(
        self,
        fn: Callable[..., Any],
        items: Iterable[Any],
        *,
        state_factory: StateFactory | None = None,
        desc: str | None = None,
        progress: ProgressCallback | None = None,
        lanes: Sequence[Sequence[tuple[int, int]]] | None = None,
    ) -> list[Any]:
        """See :meth:`Executor.map`."""
        self._check_open()
        items = list(items)
        _check_lanes(lanes, len(items))  # one worker: the items run in order
        if not items:
            return []
        state = None
        if state_factory is not None:
            if not callable(state_factory):
                raise ExecutorConfigError(
                    "state_factory must be a zero-argument callable, got "
                    f"{type(state_factory).__name__}"
                )
            try:
                token: str | None = _factory_token(state_factory)[0]
            except ExecutorConfigError:
                token = None  # unpicklable: no cross-call caching, build once for this call
            try:
                if token is None:
                    state = state_factory()
                else:
                    state = _cached_state(self._cache, self._lock, token, lambda: state_factory)
            except Exception as exc:
                message = _failure_message(exc, 0, len(items), items[0], desc, in_factory=True)
                raise TaskFailedError(message, index=0, desc=desc) from exc
        tracker = _Progress(len(items), desc, progress)
        out: list[Any] = []
        try:
            for index, item in enumerate(items):
                try:
                    out.append(fn(item) if state_factory is None else fn(state, item))
                except Exception as exc:
                    message = _failure_message(exc, index, len(items), item, desc, False)
                    raise TaskFailedError(message, index=index, desc=desc) from exc
                tracker.update(1)
        finally:
            tracker.close()
        return out

    def close(self) -> None:
        """Drop the cached states."""
        self._cache.clear()
        self._closed = True


class ProcessPoolExecutor(_ExecutorBase):
    """Runs chunks of tasks in a pool of worker processes (:mod:`concurrent.futures`).

    The pool is started on the first :meth:`map` and kept until :meth:`close`, so the states
    cached in the workers survive across :meth:`map` calls (e.g. progressive-hedging
    iterations). Workers are started with the ``"spawn"`` method by default (safe with threads
    and native solver libraries; the worker imports this module and the module of ``fn``).

    Parameters
    ----------
    n_workers : int, optional
        Number of worker processes; default: the CPUs available to this process.
    chunksize : int, optional
        Tasks per submitted chunk; default ``ceil(n_items / (4 n_workers))``.
    mp_context : str, optional
        :mod:`multiprocessing` start method (``"spawn"``, ``"forkserver"``, ``"fork"``).
    """

    def __init__(
        self,
        n_workers: int | None = None,
        *,
        chunksize: int | None = None,
        mp_context: str = "spawn",
    ):
        self._n_workers = _resolve_n_workers(n_workers)
        self._chunksize = _check_chunksize(chunksize)
        try:
            self._context = multiprocessing.get_context(mp_context)
        except ValueError as exc:
            raise ExecutorConfigError(f"unknown mp_context {mp_context!r}: {exc}") from exc
        self._pool: cf.ProcessPoolExecutor | None = None
        self._closed = False

    @property
    def n_workers(self) -> int:
        """Number of worker processes."""
        return self._n_workers

    def _ensure_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                max_workers=self._n_workers,
                mp_context=self._context,
                initializer=_leave_interrupts_to_the_parent,
            )
        return self._pool

    def map(
        self,
        fn: Callable[..., Any],
        items: Iterable[Any],
        *,
        state_factory: StateFactory | None = None,
        desc: str | None = None,
        progress: ProgressCallback | None = None,
        lanes: Sequence[Sequence[tuple[int, int]]] | None = None,
    ) -> list[Any]:
        """See :meth:`Executor.map`."""
        self._check_open()
        items = list(items)
        explicit = _check_lanes(lanes, len(items))
        if not items:
            return []
        _check_picklable(fn)
        token, payload = (None, None) if state_factory is None else _factory_token(state_factory)
        pool = self._ensure_pool()
        scheduler = None
        futures: dict[cf.Future, tuple[int, int, int]] = {}
        # the factory payload (the pickled problem: megabytes) goes with the first chunk of each
        # worker only; a worker without the state answers _StateNeeded and gets it then
        with_payload = [self._n_workers]

        def submit(lane: int, chunk: tuple[int, int], ship: bool = False) -> cf.Future:
            a, b = chunk
            ship = ship or with_payload[0] > 0
            with_payload[0] -= 1
            future = pool.submit(_run_chunk, fn, items[a:b], a, token, payload if ship else None)
            futures[future] = (a, b, lane)
            return future

        if explicit is None:
            for a, b in _chunk_bounds(len(items), self._n_workers, self._chunksize):
                submit(-1, (a, b))
        else:
            scheduler = _LaneScheduler(explicit)
            for lane, chunk in scheduler.start(self._n_workers):
                submit(lane, chunk)
        results: list[Any] = [None] * len(items)
        tracker = _Progress(len(items), desc, progress)
        try:
            pending = set(futures)
            while pending:
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    a, b, lane = futures[future]
                    if not self._collect(future, results, items, desc, a, b):
                        pending.add(submit(lane, (a, b), ship=True))  # same chunk, with state
                        continue
                    tracker.update(b - a)
                    nxt = scheduler.next(lane) if scheduler is not None else None
                    if nxt is not None:  # the worker just freed takes it
                        pending.add(submit(*nxt))
        except BaseException as exc:
            if isinstance(exc, Exception):
                for future in futures:
                    future.cancel()
            else:  # Ctrl-C, SIGTERM: do not wait for chunks
                # no cancel() first: the pool's manager thread marks every pending future of
                # a broken pool failed; on Python 3.11 a cancelled one makes it raise
                # InvalidStateError and die before it closes the queue pipe its feeder thread
                # may be blocked writing a large chunk to (CPython gh-94777), and that thread
                # then hangs the interpreter's exit. The futures fail with BrokenProcessPool.
                self._kill_workers()
            raise
        finally:
            tracker.close()
        return results

    def _collect(
        self,
        future: cf.Future,
        results: list[Any],
        items: list[Any],
        desc: str | None,
        a: int,
        b: int,
    ) -> bool:
        """Store a finished chunk's results (``False``: the worker needs the state payload), or
        raise its failure as a TaskFailedError."""
        try:
            out = future.result()
            if isinstance(out, _StateNeeded):
                return False
            results[a:b] = out
        except _ChunkFailure as failure:
            raise _task_failed_from(failure, items, desc) from failure.error
        except BrokenProcessPool as exc:
            self._discard_pool()
            raise TaskFailedError(
                f"a worker process died while running tasks {a}..{b - 1} of "
                f"{len(items)}{f' ({desc})' if desc else ''}: {exc}",
                index=a,
                desc=desc,
            ) from exc
        except Exception as exc:  # e.g. an item that cannot be pickled
            raise TaskFailedError(
                f"tasks {a}..{b - 1} of {len(items)}{f' ({desc})' if desc else ''} could "
                f"not be run: {type(exc).__name__}: {exc}",
                index=a,
                desc=desc,
            ) from exc
        return True

    def _discard_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _kill_workers(self) -> None:
        """End the worker processes at once (an interrupt: their running chunks are lost).

        Workers ignore SIGINT/SIGTERM (:func:`_leave_interrupts_to_the_parent`), so they are
        killed; the cached states go with them and the next :meth:`map` starts a new pool.
        """
        if self._pool is None:
            return
        processes = list(getattr(self._pool, "_processes", {}).values())
        for process in processes:
            process.kill()
        for process in processes:
            process.join(timeout=5)
        self._discard_pool()

    def close(self) -> None:
        """Shut the worker processes down (waits for running chunks)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._closed = True


class DaskExecutor(_ExecutorBase):
    """Runs chunks of tasks on a Dask ``distributed`` cluster.

    With ``address=None`` a private ``LocalCluster(processes=True, threads_per_worker=1)`` with
    ``n_workers`` worker processes is started (and shut down by :meth:`close`); otherwise the
    executor connects to the scheduler at ``address`` and leaves the cluster running on close.
    States are cached in each worker process by this module (keyed by factory token and worker
    thread), so they survive across tasks and :meth:`map` calls as long as the worker lives.

    Parameters
    ----------
    address : str, optional
        Scheduler address, e.g. ``"tcp://10.0.0.5:8786"``. Workers of a remote cluster must be
        able to import :mod:`gridrecourse` and the module of ``fn``.
    n_workers : int, optional
        Local cluster: number of worker processes (default: the CPUs available). Remote
        cluster: wait until at least this many workers have joined.
    chunksize : int, optional
        Tasks per submitted chunk; default ``ceil(n_items / (4 n_workers))``.

    Notes
    -----
    Scripts that create a local cluster must guard their entry point with
    ``if __name__ == "__main__":`` (the workers are spawned processes).
    """

    def __init__(
        self,
        address: str | None = None,
        n_workers: int | None = None,
        *,
        chunksize: int | None = None,
    ):
        try:
            import distributed
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ExecutorConfigError(
                "DaskExecutor needs dask[distributed]: pip install 'gridrecourse[distributed]'"
            ) from exc
        self._distributed = distributed
        self._chunksize = _check_chunksize(chunksize)
        self._cluster: Any = None
        self._closed = False
        if address is None:
            n = _resolve_n_workers(n_workers)
            self._cluster = distributed.LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            )
            self._client = distributed.Client(self._cluster)
            self._client.wait_for_workers(n)
        else:
            self._client = distributed.Client(address)
            if n_workers is not None:
                self._client.wait_for_workers(_resolve_n_workers(n_workers))

    @property
    def client(self) -> Any:
        """The underlying ``distributed.Client``."""
        return self._client

    @property
    def n_workers(self) -> int:
        """Total worker threads of the cluster (= worker processes on a local cluster)."""
        return max(1, sum(self._client.nthreads().values()))

    def map(
        self,
        fn: Callable[..., Any],
        items: Iterable[Any],
        *,
        state_factory: StateFactory | None = None,
        desc: str | None = None,
        progress: ProgressCallback | None = None,
        lanes: Sequence[Sequence[tuple[int, int]]] | None = None,
    ) -> list[Any]:
        """See :meth:`Executor.map`."""
        self._check_open()
        items = list(items)
        explicit = _check_lanes(lanes, len(items))
        if not items:
            return []
        token, payload = (None, None) if state_factory is None else _factory_token(state_factory)
        client = self._client
        payload_arg: Any = payload
        if payload is not None and len(payload) > _DASK_SCATTER_THRESHOLD:
            payload_arg = client.scatter(payload, broadcast=True)
        chunks = (
            _round_robin(explicit)
            if explicit is not None
            else _chunk_bounds(len(items), self.n_workers, self._chunksize)
        )
        futures = [
            client.submit(_run_chunk, fn, items[a:b], a, token, payload_arg, pure=False)
            for a, b in chunks
        ]
        bounds = {future.key: chunk for future, chunk in zip(futures, chunks, strict=True)}
        results: list[Any] = [None] * len(items)
        tracker = _Progress(len(items), desc, progress)
        try:
            for future in self._distributed.as_completed(futures):
                a, b = bounds[future.key]
                try:
                    results[a:b] = future.result()
                except _ChunkFailure as failure:
                    raise _task_failed_from(failure, items, desc) from failure.error
                except Exception as exc:  # killed worker, unpicklable item, ...
                    raise TaskFailedError(
                        f"tasks {a}..{b - 1} of {len(items)}{f' ({desc})' if desc else ''} could "
                        f"not be run: {type(exc).__name__}: {exc}",
                        index=a,
                        desc=desc,
                    ) from exc
                tracker.update(b - a)
        except BaseException:
            client.cancel(futures)
            raise
        finally:
            tracker.close()
        return results

    def close(self) -> None:
        """Close the client (and the local cluster, if this executor started it)."""
        if self._closed:
            return
        self._closed = True
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------
class ExecutorKind(str, enum.Enum):
    """Names accepted by :func:`make_executor`."""

    INPROCESS = "inprocess"
    PROCESS = "process"
    DASK = "dask"


def make_executor(
    kind: ExecutorKind | str = ExecutorKind.PROCESS,
    n_workers: int | None = None,
    address: str | None = None,
) -> Executor:
    """Create an executor by kind.

    Parameters
    ----------
    kind : ExecutorKind or str
        ``ExecutorKind.PROCESS`` (default), ``ExecutorKind.INPROCESS`` or ``ExecutorKind.DASK``,
        or their values ``"process"``, ``"inprocess"``, ``"dask"``.
    n_workers : int, optional
        Number of workers (see each executor); must be ``None`` or 1 for ``INPROCESS``.
    address : str, optional
        Dask scheduler address; only for ``DASK`` (``None`` starts a local cluster).

    Raises
    ------
    ExecutorConfigError
        Unknown kind, or an argument that does not apply to the kind.
    """
    try:
        kind = ExecutorKind(kind)
    except ValueError:
        valid = ", ".join(repr(k.value) for k in ExecutorKind)
        raise ExecutorConfigError(
            f"unknown executor kind {kind!r}; expected one of {valid}"
        ) from None
    if address is not None and kind is not ExecutorKind.DASK:
        raise ExecutorConfigError(
            f"address={address!r} only applies to the {ExecutorKind.DASK.value!r} executor, "
            f"not {kind.value!r}"
        )
    if kind is ExecutorKind.INPROCESS:
        if n_workers not in (None, 1):
            raise ExecutorConfigError(
                f"the {kind.value!r} executor runs one task at a time; got n_workers={n_workers!r}"
            )
        return InProcessExecutor()
    if kind is ExecutorKind.PROCESS:
        return ProcessPoolExecutor(n_workers)
    return DaskExecutor(address=address, n_workers=n_workers)
