"""Tests of gridrecourse.execution: every executor gives the same ordered results, builds the
worker state once per worker (not once per task), and reports the index of a failing task."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict

import pytest

from gridrecourse.errors import GridRecourseError
from gridrecourse.execution import (
    DaskExecutor,
    Executor,
    ExecutorClosedError,
    ExecutorConfigError,
    ExecutorKind,
    InProcessExecutor,
    ProcessPoolExecutor,
    TaskFailedError,
    _LaneScheduler,
    clear_state_cache,
    make_executor,
    state_token,
)

N_WORKERS = 2

# ----------------------------------------------------------------------------------------------
# Task functions: module level so that the worker processes can unpickle them.
# ----------------------------------------------------------------------------------------------
_FACTORY_CALLS = 0  # per process: how many times any state factory ran here


def square(x: int) -> int:
    return x * x


def uneven_square(x: int) -> int:
    """Square with uneven durations, so chunks complete out of order."""
    time.sleep(0.003 * ((7 * x) % 5))
    return x * x


def make_state(tag: str) -> dict:
    """A 'model': identified by (pid, thread, call number); counts its own uses."""
    global _FACTORY_CALLS
    _FACTORY_CALLS += 1
    return {
        "id": (os.getpid(), threading.get_ident(), _FACTORY_CALLS),
        "tag": tag,
        "uses": 0,
    }


def use_state(state: dict, x: int) -> tuple[tuple[int, int, int], str, int, int]:
    state["uses"] += 1
    return state["id"], state["tag"], state["uses"], x * x


def failing_factory() -> None:
    raise RuntimeError("model build failed")


def fail_on_seven(x: int) -> int:
    if x == 7:
        raise ValueError(f"bad scenario {x}")
    return x


class TwoArgError(Exception):
    """Cannot be unpickled (its __init__ needs two arguments, pickle passes one)."""

    def __init__(self, a: int, b: int):
        super().__init__(f"{a}/{b}")


def fail_unpicklable(x: int) -> int:
    if x == 3:
        raise TwoArgError(x, 0)
    return x


# ----------------------------------------------------------------------------------------------
# Fixtures: one pool / cluster per module (spawning workers is the slow part).
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def process_executor():
    with ProcessPoolExecutor(n_workers=N_WORKERS) as ex:
        yield ex


@pytest.fixture(scope="module")
def dask_executor():
    with DaskExecutor(n_workers=N_WORKERS) as ex:
        yield ex


@pytest.fixture(params=[k.value for k in ExecutorKind])
def executor(request):
    if request.param == ExecutorKind.INPROCESS.value:
        with InProcessExecutor() as ex:
            yield ex
    elif request.param == ExecutorKind.PROCESS.value:
        yield request.getfixturevalue("process_executor")
    else:
        yield request.getfixturevalue("dask_executor")


# ----------------------------------------------------------------------------------------------
# Same results, order preserved
# ----------------------------------------------------------------------------------------------
def test_all_executors_same_ordered_results(executor):
    items = list(range(23))
    assert isinstance(executor, Executor)
    assert executor.map(uneven_square, items) == [x * x for x in items]
    assert executor.map(square, iter(items)) == [x * x for x in items]  # any iterable
    assert executor.map(square, []) == []


def test_order_preserved_with_small_chunks():
    items = list(range(17))
    with ProcessPoolExecutor(n_workers=N_WORKERS, chunksize=3) as ex:
        assert ex.map(uneven_square, items) == [x * x for x in items]


# ----------------------------------------------------------------------------------------------
# Build once, re-solve many
# ----------------------------------------------------------------------------------------------
def _by_state(results):
    uses = defaultdict(list)
    for state_id, _tag, n_uses, _value in results:
        uses[state_id].append(n_uses)
    return uses


def test_state_built_once_per_worker(executor, request):
    tag = f"once-{request.node.name}"
    items = list(range(40))
    assert len(items) > executor.n_workers
    results = executor.map(use_state, items, state_factory=functools.partial(make_state, tag))
    assert [r[3] for r in results] == [x * x for x in items]
    assert all(r[1] == tag for r in results)
    uses = _by_state(results)
    # at most one state per worker, although there are many more tasks than workers
    assert 1 <= len(uses) <= executor.n_workers
    # each state object was reused by every task of its worker: its use count runs 1, 2, ..., k
    for counts in uses.values():
        assert sorted(counts) == list(range(1, len(counts) + 1))

    # an equal factory (new but equal partial) reuses the cached states in a later map call
    again = executor.map(use_state, items, state_factory=functools.partial(make_state, tag))
    uses_again = _by_state(again)
    assert len(set(uses) | set(uses_again)) <= executor.n_workers
    for state_id in set(uses) & set(uses_again):
        assert min(uses_again[state_id]) > max(uses[state_id])
    if isinstance(executor, InProcessExecutor):
        assert set(uses_again) == set(uses)

    # a different factory builds new states
    other = executor.map(use_state, items, state_factory=functools.partial(make_state, tag + "x"))
    assert not set(_by_state(other)) & set(uses)


def test_lanes_run_each_chunk_on_one_worker_in_order(executor, request):
    """A chunk given in lanes runs on one worker, its items one after the other in order
    (consecutive uses of that worker's state), whatever order the lanes list them in."""
    tag = f"lanes-{request.node.name}"
    items = list(range(12))
    lanes = [[(0, 3), (8, 12)], [(3, 8)]]
    out = executor.map(
        use_state, items, state_factory=functools.partial(make_state, tag), lanes=lanes
    )
    assert [r[3] for r in out] == [x * x for x in items]
    for a, b in (c for lane in lanes for c in lane):
        assert len({r[0] for r in out[a:b]}) == 1
        uses = [r[2] for r in out[a:b]]
        assert uses == list(range(uses[0], uses[0] + b - a))


@pytest.mark.parametrize(
    "lanes",
    [
        [[(0, 3)]],
        [[(0, 3)], [(2, 5)]],
        [[(0, 0), (0, 5)]],
        [[(0, 2)], [(3, 5)]],
        [[(0, 6)]],
        [["ab"]],
        [(0, 5)],
    ],
)
def test_lanes_must_partition_the_items(lanes):
    for ex in (InProcessExecutor(), ProcessPoolExecutor(n_workers=1)):
        with ex, pytest.raises(ExecutorConfigError, match="lanes must"):
            ex.map(square, range(5), lanes=lanes)


def test_lane_scheduler_follows_lanes_and_steals_the_back_half():
    """Each worker gets the next chunk of its own lane; an empty lane takes the back half (in
    items) of the fullest lane, whose owner keeps the front half."""
    sched = _LaneScheduler([[(0, 2), (2, 4)], [(4, 6), (6, 8), (8, 10), (10, 12), (12, 14)]])
    assert sched.start(2) == [(0, (0, 2)), (1, (4, 6))]
    assert sched.next(0) == (0, (2, 4))
    assert sched.next(1) == (1, (6, 8))
    # lane 0 is done: it takes the back half of lane 1's (8, 10), (10, 12), (12, 14)
    assert sched.next(0) == (0, (10, 12))
    assert sched.lanes == [[(12, 14)], [(8, 10)]]
    assert sched.next(1) == (1, (8, 10))
    assert sched.next(1) == (1, (12, 14))  # the last chunk left anywhere, stolen whole
    assert sched.next(0) is None and sched.next(1) is None


def test_lanes_on_a_pool_cover_every_item_with_uneven_durations():
    items = list(range(30))
    lanes = [[(a, a + 3) for a in range(0, 15, 3)], [(a, a + 3) for a in range(15, 30, 3)]]
    with ProcessPoolExecutor(n_workers=N_WORKERS) as ex:
        calls = []
        out = ex.map(uneven_square, items, lanes=lanes, progress=lambda d, t: calls.append(d))
    assert out == [x * x for x in items]
    assert calls[-1] == 30 and len(calls) == 10


def use_state_then_forget(state: dict, x: int) -> tuple[tuple[int, int, int], int]:
    """Use the state, then empty this worker's state cache (as an LRU eviction would)."""
    clear_state_cache()
    return state["id"], x * x


def test_a_worker_that_lost_its_state_gets_the_factory_again(request):
    """Chunks after each worker's first are sent without the factory payload; a worker that has
    no state for the token (here: evicted after every chunk) asks for it, and the chunk is
    resubmitted with it, so every chunk runs on a state built from the factory."""
    tag = f"forget-{request.node.name}"
    items = list(range(8))
    with ProcessPoolExecutor(n_workers=N_WORKERS, chunksize=1) as ex:
        out = ex.map(use_state_then_forget, items, state_factory=functools.partial(make_state, tag))
    assert [r[1] for r in out] == [x * x for x in items]
    assert len({r[0] for r in out}) == len(items)  # a fresh state for every chunk


def test_inprocess_factory_called_once():
    calls = []

    def factory():  # a local function: unpicklable, cached for the duration of one call
        calls.append(1)
        return len(calls)

    with InProcessExecutor() as ex:
        assert ex.map(lambda s, x: (s, x), range(5), state_factory=factory) == [
            (1, x) for x in range(5)
        ]
    assert len(calls) == 1


def test_state_token_is_content_based():
    assert state_token(functools.partial(make_state, "a")) == state_token(
        functools.partial(make_state, "a")
    )
    assert state_token(functools.partial(make_state, "a")) != state_token(
        functools.partial(make_state, "b")
    )
    with pytest.raises(ExecutorConfigError, match="cannot be pickled"):
        state_token(lambda: 1)


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------
def test_task_error_carries_index(executor):
    with pytest.raises(TaskFailedError) as info:
        executor.map(fail_on_seven, range(12), desc="demo")
    err = info.value
    assert isinstance(err, GridRecourseError)
    assert err.index == 7
    assert "task 7 of 12" in str(err) and "demo" in str(err) and "bad scenario 7" in str(err)
    assert isinstance(err.__cause__, ValueError)
    assert str(err.__cause__) == "bad scenario 7"
    # the executor is still usable after a failure
    assert executor.map(square, range(4)) == [0, 1, 4, 9]


def test_state_factory_error(executor):
    with pytest.raises(TaskFailedError, match="state_factory") as info:
        executor.map(use_state, range(6), state_factory=failing_factory)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "model build failed" in str(info.value)


def test_unpicklable_worker_error(process_executor):
    with pytest.raises(TaskFailedError, match="TwoArgError") as info:
        process_executor.map(fail_unpicklable, range(6))
    assert info.value.index == 3
    assert "TwoArgError" in info.value.remote_traceback


def test_unpicklable_fn_and_factory_rejected(process_executor):
    with pytest.raises(ExecutorConfigError, match="cannot be pickled"):
        process_executor.map(lambda x: x, range(3))
    with pytest.raises(ExecutorConfigError, match="cannot be pickled"):
        process_executor.map(use_state, range(3), state_factory=lambda: {})


def test_map_after_close():
    ex = InProcessExecutor()
    ex.close()
    with pytest.raises(ExecutorClosedError):
        ex.map(square, [1])


# ----------------------------------------------------------------------------------------------
# Progress
# ----------------------------------------------------------------------------------------------
def test_progress_callback(executor):
    seen: list[tuple[int, int]] = []
    executor.map(square, range(10), progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (10, 10)
    assert all(total == 10 for _, total in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_progress_line_on_stderr(capsys):
    with InProcessExecutor() as ex:
        ex.map(square, range(10), desc="scenarios")
    err = capsys.readouterr().err
    assert "scenarios: 10/10" in err
    assert len(err.splitlines()) <= 11  # not a line per task on a non-terminal


# ----------------------------------------------------------------------------------------------
# Factory
# ----------------------------------------------------------------------------------------------
def test_make_executor_kinds():
    with make_executor(ExecutorKind.INPROCESS) as a, make_executor("inprocess") as b:
        assert isinstance(a, InProcessExecutor) and isinstance(b, InProcessExecutor)
    with make_executor("process", n_workers=1) as ex:
        assert isinstance(ex, ProcessPoolExecutor) and ex.n_workers == 1
    with pytest.raises(ExecutorConfigError, match="'inprocess', 'process', 'dask'"):
        make_executor("threads")
    with pytest.raises(ExecutorConfigError, match="address"):
        make_executor(ExecutorKind.PROCESS, address="tcp://127.0.0.1:8786")
    with pytest.raises(ExecutorConfigError, match="n_workers"):
        make_executor(ExecutorKind.INPROCESS, n_workers=4)
    with pytest.raises(ExecutorConfigError, match="n_workers"):
        ProcessPoolExecutor(n_workers=0)


_CTRL_C_SCRIPT = """
import time
from gridrecourse.execution import ProcessPoolExecutor

with ProcessPoolExecutor(2, chunksize=1) as ex:
    print("started", flush=True)
    ex.map(time.sleep, [60.0] * 4)
"""


def _interrupt_group(argv: list[str], settle_seconds: float) -> subprocess.Popen:
    """Start ``argv`` in a process group of its own, wait for its ``started`` line and then
    ``settle_seconds``, and send SIGINT to the whole group, as a terminal's Ctrl-C does."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a backgrounded test runner may have SIGINT ignored: give the child the default
        preexec_fn=lambda: (signal.signal(signal.SIGINT, signal.SIG_DFL), os.setpgrp()),
    )
    assert proc.stdout.readline().strip() == "started"
    time.sleep(settle_seconds)
    os.killpg(proc.pid, signal.SIGINT)
    return proc


def test_ctrl_c_reaches_only_the_parent_and_ends_the_workers():
    """A terminal's Ctrl-C (SIGINT to the whole process group) during a map: the parent gets
    one KeyboardInterrupt and kills its workers at once, instead of waiting for their 60 s
    chunks; the workers print nothing (before: a traceback per worker)."""
    # 3 s: the workers are spawned and sleeping in their chunks
    proc = _interrupt_group([sys.executable, "-c", _CTRL_C_SCRIPT], settle_seconds=3.0)
    t0 = time.perf_counter()
    _, err = proc.communicate(timeout=30)
    assert time.perf_counter() - t0 < 15.0
    assert proc.returncode != 0
    assert err.count("KeyboardInterrupt") == 1, err
    assert "SpawnProcess" not in err, err


_CTRL_C_QUEUED_SCRIPT = """
import sys
import time

import numpy as np

from gridrecourse.execution import ProcessPoolExecutor


def slow_sum(item):
    time.sleep(0.5)
    return float(item.sum())


if __name__ == "__main__":
    ex = ProcessPoolExecutor(1, chunksize=1)
    print("started", flush=True)
    try:  # 4 MB per item: a queued chunk is far larger than a pipe's buffer
        ex.map(slow_sum, [np.ones(500_000) for _ in range(20)])
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    sys.exit(130)
"""


def test_ctrl_c_with_large_queued_chunks_lets_the_interpreter_exit(tmp_path):
    """An interrupt while chunks larger than a pipe's buffer wait in the pool's queue: the
    process ends with its exit code. Before the fix the futures were cancelled before the
    workers were killed; on Python 3.11 the pool's manager thread then died on
    InvalidStateError, its queue feeder stayed blocked writing to the dead worker, and the
    interpreter hung at exit."""
    script = tmp_path / "queued.py"
    script.write_text(_CTRL_C_QUEUED_SCRIPT)
    # 2 s: the worker is in its first chunk, the next ones are queued
    proc = _interrupt_group([sys.executable, str(script)], settle_seconds=2.0)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the interrupted process did not exit within 30 s")
    assert "interrupted" in out and proc.returncode == 130, (out, err)
    assert "InvalidStateError" not in err, err
