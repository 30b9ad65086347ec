"""The exact evaluation in blocks, checkpointed: an interrupted evaluation resumes.

:func:`evaluate_first_stage_resumable` cuts the warm-start chain of the scenarios
(:func:`~gridrecourse.evaluation.scenario_order.warm_start_order`) into ``n_blocks`` contiguous
blocks, evaluates them one after another with
:func:`~gridrecourse.evaluation.out_of_sample.evaluate_first_stage` (chain order kept,
``reorder=False``) and saves every finished block through a
:class:`~gridrecourse.checkpointing.Checkpoint`. Resumed, it solves only the blocks that are
missing and merges all of them into one
:class:`~gridrecourse.evaluation.out_of_sample.OutOfSampleResult` with the layout of the plain
evaluation (results in the order of ``scenarios``, probabilities renormalized over all of them).

Identity of a stored evaluation. Blocks are stored under a key: SHA-256 of the first stage
``x`` (bytes), the scenario selection, the block count, the solver options and a fingerprint of
the problem (:func:`problem_fingerprint`). Blocks under another key (another ``x``, another
selection or problem) are never reused; they stay in the checkpoint (up to
:data:`MAX_STORED_EVALUATIONS` evaluations, the oldest dropped first), so a method that
evaluates several first stages in turn (SPAR's repair and polish rounds) finds all of its
finished evaluations again.

Exactness (as :mod:`gridrecourse.checkpointing` defines it). LP objectives are unique, but the
duals and subgradients of a degenerate recourse LP depend on the basis HiGHS starts from. On
one worker every block therefore starts from a cold model (the HiGHS instance of the recourse
model is dropped, :meth:`~gridrecourse.solvers.highs.LinearModel.reset`), in an uninterrupted
run as in a resumed one: both solve every block from identical models, so a resumed evaluation
equals the uninterrupted one exactly, whatever the model solved before (the plain evaluation
starts from the previous evaluation's last basis). With several workers the executor's work
stealing makes the warm-start path depend on timing (in the plain evaluation too): objectives
agree to the solver's tolerance, degenerate duals may not; no block is started cold then.

Cost. Cold block starts take more simplex iterations than the warm chain; each block is one more
:meth:`~gridrecourse.execution.Executor.map` on a process pool (the problem is pickled for the
state token once per map). Measured on ieee123 and ieee9500:
``benchmarks/results/DESIGN_MEASUREMENTS.md``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gridrecourse.checkpointing import Checkpoint
from gridrecourse.evaluation.out_of_sample import (
    OutOfSampleError,
    OutOfSampleResult,
    evaluate_first_stage,
)
from gridrecourse.evaluation.scenario_order import warm_start_order
from gridrecourse.execution import Executor, InProcessExecutor, ProgressCallback
from gridrecourse.problems.base import SecondStageModel, TwoStageProblem
from gridrecourse.solvers.options import SolverOptions

__all__ = [
    "DEFAULT_BLOCKS",
    "MAX_STORED_EVALUATIONS",
    "EvaluationCheckpointError",
    "ResumableEvaluation",
    "StoredEvaluations",
    "block_ranges",
    "evaluate_first_stage_resumable",
    "evaluation_key",
    "problem_fingerprint",
]

#: Blocks the warm-start chain is cut into (our choice, module docstring "Cost"): an interrupt
#: loses at most one eighth of the evaluation (1200 scenarios of ieee9500, 150-290 s: 20-36 s).
DEFAULT_BLOCKS = 8

#: Evaluations (keys) a checkpoint keeps; the oldest is dropped first.
MAX_STORED_EVALUATIONS = 8

#: Scenarios whose row bounds enter :func:`problem_fingerprint` (first, middle, last).
_FINGERPRINT_SCENARIOS = 3


class EvaluationCheckpointError(OutOfSampleError):
    """The checkpoint holds something that is not a :class:`StoredEvaluations`, or bad blocks."""


@dataclass(frozen=True)
class StoredEvaluations:
    """The state saved in an evaluation checkpoint.

    Attributes
    ----------
    blocks : dict of str to dict of int to OutOfSampleResult
        Per evaluation key (:func:`evaluation_key`), the finished blocks by block number.
    """

    blocks: dict[str, dict[int, OutOfSampleResult]] = field(default_factory=dict)

    @property
    def n_finished_blocks(self) -> int:
        """Finished blocks over all stored evaluations."""
        return sum(len(b) for b in self.blocks.values())


@dataclass(frozen=True)
class ResumableEvaluation:
    """A blocked exact evaluation and what it took from the checkpoint.

    Attributes
    ----------
    result : OutOfSampleResult
        The merged evaluation (layout of :func:`evaluate_first_stage`); ``wall_seconds`` is the
        sum of the blocks' wall times (reused blocks count their original time).
    n_blocks : int
    reused_blocks : tuple of int
        Block numbers taken from the checkpoint.
    solved_blocks : tuple of int
        Block numbers solved by this call.
    reused_scenarios : int
        Scenarios of the reused blocks.
    """

    result: OutOfSampleResult
    n_blocks: int
    reused_blocks: tuple[int, ...]
    solved_blocks: tuple[int, ...]
    reused_scenarios: int


def block_ranges(n: int, n_blocks: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of ``n_blocks`` contiguous, near-equal blocks of ``range(n)``.

    Fewer (non-empty) blocks when ``n < n_blocks``.
    """
    if n <= 0:
        return []
    parts = np.array_split(np.arange(n), max(1, min(int(n_blocks), n)))
    return [(int(p[0]), int(p[-1]) + 1) for p in parts]


def problem_fingerprint(problem: TwoStageProblem) -> str:
    """SHA-256 (hex) of what identifies a problem's evaluation, computed the same in every process.

    The class and name, the scenario count and probabilities, the first-stage costs and bounds,
    the recourse technology matrix and column bounds, and the row bounds of the first, middle
    and last scenario. (A pickle of the problem is not stable across processes: set order
    depends on the string hash seed.) It guards against reusing the blocks of another problem
    by mistake; it is not a proof that two problems are equal.
    """
    h = hashlib.sha256()
    h.update(f"{type(problem).__module__}.{type(problem).__qualname__}:{problem.name}".encode())
    n = int(problem.n_scenarios)
    h.update(str(n).encode())
    h.update(np.ascontiguousarray(problem.probability, dtype=float).tobytes())
    fs = problem.first_stage
    for arr in (fs.cost, fs.lb, fs.ub):
        h.update(np.ascontiguousarray(arr, dtype=float).tobytes())
    spec = problem.second_stage
    tech = spec.technology.tocsr()
    for arr in (tech.indptr, tech.indices, tech.data, spec.col_lb, spec.col_ub):
        h.update(np.ascontiguousarray(arr).tobytes())
    picks = np.unique(np.linspace(0, n - 1, _FINGERPRINT_SCENARIOS).round().astype(int))
    data = problem.scenario_data(picks)
    for arr in (*data.row_bounds(spec), data.scale(spec)):
        h.update(np.ascontiguousarray(arr, dtype=float).tobytes())
    return h.hexdigest()


def evaluation_key(
    problem: TwoStageProblem | str,
    x: np.ndarray,
    scenarios: np.ndarray,
    n_blocks: int,
    options: SolverOptions,
) -> str:
    """Key of a blocked evaluation in a checkpoint (SHA-256 hex).

    Parameters
    ----------
    problem : TwoStageProblem or str
        The problem, or its :func:`problem_fingerprint`.
    x : ndarray
        First-stage vector (its float64 bytes: another ``x`` never matches).
    scenarios : ndarray of int
        The scenario selection, in the caller's order.
    n_blocks : int
    options : SolverOptions
    """
    fingerprint = problem if isinstance(problem, str) else problem_fingerprint(problem)
    h = hashlib.sha256(fingerprint.encode())
    h.update(np.ascontiguousarray(x, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(scenarios, dtype=np.int64).tobytes())
    h.update(f"{int(n_blocks)}|{options!r}".encode())
    return h.hexdigest()


def _cold_at(model: SecondStageModel, item: tuple[bool, int], *, fn: Callable[..., Any]) -> Any:
    """Executor task: drop the model's HiGHS instance first when ``item[0]`` (a lane start)."""
    cold, scenario = item
    if cold:
        model.model.reset()
    return fn(model, scenario)


class _ColdBlockStart:
    """An :class:`~gridrecourse.execution.Executor` whose one-worker maps start cold.

    Wraps the caller's executor for one block: on one worker the first task of the map runs on a
    model without a warm start (module docstring, "Exactness"); on several workers the tasks
    pass through unchanged.
    """

    def __init__(self, inner: Executor):
        self.inner = inner

    @property
    def n_workers(self) -> int:
        return self.inner.n_workers

    def map(self, fn, items, *, lanes=None, **kwargs):
        items = list(items)
        starts = {0} if self.inner.n_workers == 1 else set()
        tagged = [(k in starts, item) for k, item in enumerate(items)]
        return self.inner.map(functools.partial(_cold_at, fn=fn), tagged, lanes=lanes, **kwargs)

    def close(self) -> None:  # pragma: no cover - the caller closes the inner executor
        pass


def _check_stored(state: Any) -> StoredEvaluations:
    if state is None:
        return StoredEvaluations()
    if not isinstance(state, StoredEvaluations):
        raise EvaluationCheckpointError(
            f"evaluation checkpoint holds a {type(state).__name__}, not StoredEvaluations"
        )
    return state


def evaluate_first_stage_resumable(
    problem: TwoStageProblem,
    x: np.ndarray | object,
    *,
    checkpoint: Checkpoint | None = None,
    scenarios: Sequence[int] | np.ndarray | None = None,
    executor: Executor | None = None,
    options: SolverOptions | None = None,
    n_blocks: int = DEFAULT_BLOCKS,
    progress: ProgressCallback | None = None,
    note: Callable[[str], None] | None = None,
) -> ResumableEvaluation:
    """:func:`evaluate_first_stage` in checkpointed blocks of the warm-start chain.

    Parameters
    ----------
    problem : TwoStageProblem
    x : ndarray or decision
        First-stage vector, or a decision the problem encodes (``first_stage_vector``).
    checkpoint : Checkpoint, optional
        Where finished blocks are saved (after every block) and found again; a
        :class:`StoredEvaluations` state. None: the same blocked evaluation, nothing saved.
    scenarios : sequence of int, optional
        Scenario indices (default all); probabilities renormalized over them.
    executor : Executor, optional
        Default in-process (closed at the end then).
    options : SolverOptions, optional
        Recourse solver options (default :class:`SolverOptions()`).
    n_blocks : int, default :data:`DEFAULT_BLOCKS`
        Blocks of the chain (>= 1); part of the key, so a resume must use the same count.
    progress : callable, optional
        ``progress(done, total)`` in scenarios, counting reused ones.
    note : callable, optional
        Called with one line saying what was reused (only when something was).

    Returns
    -------
    ResumableEvaluation

    Raises
    ------
    OutOfSampleError
        Bad ``x`` shape, scenario indices or ``n_blocks``.
    EvaluationCheckpointError
        The checkpoint holds another kind of state.
    """
    if int(n_blocks) != n_blocks or n_blocks < 1:
        raise OutOfSampleError(f"n_blocks must be an integer >= 1, got {n_blocks}")
    n_x = problem.first_stage.size
    if not isinstance(x, np.ndarray):
        encode = getattr(problem, "first_stage_vector", None)
        x = encode(x) if encode is not None else np.asarray(x, dtype=float)
    x = np.asarray(x, dtype=float)
    if x.shape != (n_x,):
        raise OutOfSampleError(f"first-stage vector must have shape ({n_x},), got {x.shape}")
    n_all = problem.n_scenarios
    idx = np.arange(n_all) if scenarios is None else np.asarray(scenarios, dtype=int).ravel()
    if idx.size == 0 or idx.min() < 0 or idx.max() >= n_all:
        raise OutOfSampleError(f"scenario indices must be within 0..{n_all - 1}")
    options = options or SolverOptions()
    key = evaluation_key(problem, x, idx, n_blocks, options)
    stored = _check_stored(None if checkpoint is None else checkpoint.load())
    finished: dict[int, OutOfSampleResult] = dict(stored.blocks.get(key, {}))
    order = warm_start_order(problem, idx)
    ranges = block_ranges(idx.size, n_blocks)
    if any(
        b >= len(ranges) or r.scenario_indices.size != ranges[b][1] - ranges[b][0]
        for b, r in finished.items()
    ):
        raise EvaluationCheckpointError("evaluation checkpoint: blocks do not match the chain")
    reused = tuple(sorted(finished))
    n_reused = sum(finished[b].scenario_indices.size for b in reused)
    if note is not None:
        if reused:
            note(
                f"exact evaluation: reused {n_reused} of {idx.size} scenarios "
                f"({len(reused)} of {len(ranges)} blocks) from the checkpoint"
            )
        elif stored.blocks:
            note(
                "exact evaluation: the checkpoint holds evaluations of another first stage, "
                "scenario selection or problem; they are not reused"
            )
    done = n_reused
    if progress is not None and done:
        progress(done, idx.size)
    own = executor is None
    ex = InProcessExecutor() if own else executor
    cold = _ColdBlockStart(ex)
    solved: list[int] = []
    try:
        for b, (start, stop) in enumerate(ranges):
            if b in finished:
                continue
            offset = done

            def block_progress(k: int, _total: int, offset: int = offset) -> None:
                if progress is not None:
                    progress(offset + k, idx.size)

            finished[b] = evaluate_first_stage(
                problem,
                x,
                scenarios=idx[order[start:stop]],
                executor=cold,  # type: ignore[arg-type]
                options=options,
                desc=None,
                progress=block_progress,
                reorder=False,
            )
            solved.append(b)
            done += stop - start
            if checkpoint is not None:
                blocks = {k: v for k, v in stored.blocks.items() if k != key}
                blocks[key] = dict(finished)
                while len(blocks) > MAX_STORED_EVALUATIONS:
                    blocks.pop(next(iter(blocks)))
                stored = StoredEvaluations(blocks)
                checkpoint.save(stored)
    finally:
        if own:
            ex.close()
    merged = _merge(problem, x, idx, order, [finished[b] for b in range(len(ranges))])
    return ResumableEvaluation(
        result=merged,
        n_blocks=len(ranges),
        reused_blocks=reused,
        solved_blocks=tuple(solved),
        reused_scenarios=n_reused,
    )


def _merge(
    problem: TwoStageProblem,
    x: np.ndarray,
    idx: np.ndarray,
    order: np.ndarray,
    parts: list[OutOfSampleResult],
) -> OutOfSampleResult:
    """One result from the blocks (chain order) in the order of ``idx``."""
    back = np.argsort(order)

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts], axis=0)[back]

    cuts = sorted(
        (c for p in parts for c in p.cuts), key=lambda c: int(np.flatnonzero(idx == c.scenario)[0])
    )
    return OutOfSampleResult.of_scenarios(
        problem,
        x,
        idx,
        objectives=cat("objectives"),
        feasible=cat("feasible"),
        penalties=cat("penalties"),
        linking_duals=cat("linking_duals"),
        subgradients=cat("subgradients"),
        cuts=tuple(cuts),
        solve_seconds=cat("solve_seconds"),
        wall_seconds=float(sum(p.wall_seconds for p in parts)),
        mip_gaps=cat("mip_gaps"),
        dual_bounds=cat("dual_bounds"),
        simplex_iterations=cat("simplex_iterations"),
    )
