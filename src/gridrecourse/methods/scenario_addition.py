"""Exact two-stage solution by scenario addition: the extensive form over a growing subset.

For a problem whose recourse has a floor ``Q(x, ξ_ω) ≥ L_ω`` for every ``x``
(:func:`~gridrecourse.problems.base.recourse_floor`; paper B's curtailment recourse has
``L_ω = 0``), the *restricted master* over a scenario subset ``R``::

    z_R = min_x  cᵀx + Σ_{ω∈R} π_ω Q(x, ξ_ω) + Σ_{ω∉R} π_ω L_ω

is a relaxation of the full extensive form (METHODS §2, eq. EF): every term it drops is
replaced by a lower bound. So the MIP dual bound of the restricted master is a valid lower
bound on the optimum ``z*`` whatever ``R`` is, and the exact value ``z(x̂_R)`` of its solution
over all scenarios (one recourse solve per scenario, in parallel through the executor) is an
upper bound. Each round adds the scenarios in which ``x̂_R`` is infeasible or unresolved (the
recourse MILP reached its time limit without a feasible point), or else those with
the largest weighted excess ``π_ω (Q(x̂_R, ξ_ω) − L_ω)``; the loop stops when the bounds meet
within the requested gap, and at ``R`` = all scenarios the master *is* the extensive form.

Scenario kernels (our addition, ``scenario_kernels=True``). Before the master over a grown
subset, each scenario about to be added gets its own single-scenario master (the restricted
master over ``{ω}``, a valid lower bound like any other). Its solution is solved first in the
other scenarios of the grown subset; if it is feasible there it is evaluated exactly over all
scenarios (a valid upper bound when it is feasible in every one), and the master over the
grown subset starts from the evaluated first stage that is feasible in the whole subset with
the least restricted value. When a rare scenario makes the previous solution infeasible, its own
solution is often cheap and feasible in the rest, and the large master then starts on it (or
is not needed at all, when the bounds already meet); without it the master starts from the
caller's start. The loop, its bounds and its stopping rule are unchanged.

This pays when few scenarios decide the first stage, as in paper B's Volt-VAR problem on the
IEEE 123 feeder: its cost is mostly tap and switch operations, whose only link to the
scenarios is second-stage feasibility (Range B), so one or two scenarios fix the answer
(measurements: ``benchmarks/results/voltvar`` and the README). It is an exact method with a
proven gap, not a heuristic: the result reports both bounds.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

import numpy as np

from gridrecourse.errors import GridRecourseError, InfeasibleModelError, SolverTimeLimitError
from gridrecourse.evaluation.out_of_sample import evaluate_first_stage
from gridrecourse.execution import Executor
from gridrecourse.methods.extensive_form import solve_extensive_form
from gridrecourse.problems.base import SolveStatus, TwoStageProblem, recourse_floor
from gridrecourse.solvers.options import SolverOptions, relative_gap, stopping_tolerance

__all__ = [
    "ScenarioAdditionError",
    "ScenarioAdditionResult",
    "ScenarioAdditionRound",
    "solve_scenario_addition",
]

D = TypeVar("D")


class ScenarioAdditionError(GridRecourseError, ValueError):
    """Bad settings, or a problem whose recourse has no finite floor."""


@dataclass(frozen=True)
class ScenarioAdditionRound:
    """One restricted master and the exact evaluation of its solution.

    Attributes
    ----------
    scenarios : tuple of int
        The subset ``R`` of this round.
    master_objective, master_bound : float
        Incumbent and MIP dual bound of the restricted master (objective units).
    value : float
        Exact expected objective of the master's solution over all scenarios (``inf`` when
        it is infeasible in some scenario).
    n_infeasible : int
        Scenarios in which the master's solution is not shown feasible (infeasible, or
        unresolved: added like an infeasible one).
    master_seconds, evaluate_seconds : float
    """

    scenarios: tuple[int, ...]
    master_objective: float
    master_bound: float
    value: float
    n_infeasible: int
    master_seconds: float
    evaluate_seconds: float


@dataclass(frozen=True)
class ScenarioAdditionResult(Generic[D]):
    """Best first stage found and its proven bounds.

    Attributes
    ----------
    decision : D
    x : ndarray
        Best evaluated first stage.
    objective : float
        Its exact expected objective over all scenarios (the upper bound).
    bound : float
        The best restricted-master dual bound (a valid lower bound on the optimum).
    gap : float
        ``(objective − bound) / |objective|``.
    status : SolveStatus
        ``OPTIMAL`` when the gap met the requested one, else ``TIME_LIMIT`` (round or time
        limit reached first).
    rounds : tuple of ScenarioAdditionRound
    recourse : ndarray, shape (S,)
        Per-scenario recourse values of ``x``.
    wall_seconds : float
    kernels : tuple of ScenarioAdditionRound
        The single-scenario masters of ``scenario_kernels`` (module docstring), in the order
        solved; each one's ``scenarios`` is its one scenario. A kernel infeasible in another
        scenario of the grown subset is not evaluated in full: its ``value`` is inf and its
        ``n_infeasible`` counts the subset scenarios it fails.
    """

    decision: D
    x: np.ndarray
    objective: float
    bound: float
    gap: float
    status: SolveStatus
    rounds: tuple[ScenarioAdditionRound, ...]
    recourse: np.ndarray
    wall_seconds: float
    kernels: tuple[ScenarioAdditionRound, ...] = ()


def _additions(
    value: np.ndarray, floor: np.ndarray, prob: np.ndarray, chosen: np.ndarray, per_round: int
) -> np.ndarray:
    """Scenarios to add: infeasible ones (``value`` inf) first, then the largest weighted
    excess."""
    out = np.flatnonzero(~np.isfinite(value) & ~chosen)
    if out.size:
        return out[:per_round]
    excess = np.where(chosen, -np.inf, prob * (value - floor))
    order = np.argsort(-excess, kind="stable")[:per_round]
    return order[excess[order] > 0]


def solve_scenario_addition(
    problem: TwoStageProblem[D],
    options: SolverOptions | None = None,
    *,
    initial: Sequence[int] | None = None,
    per_round: int = 1,
    max_rounds: int = 50,
    time_limit: float | None = None,
    start: np.ndarray | None = None,
    executor: Executor | None = None,
    eval_options: SolverOptions | None = None,
    log: Callable[[str], None] | None = None,
    scenario_kernels: bool = False,
) -> ScenarioAdditionResult[D]:
    """Solve the two-stage problem by scenario addition (module docstring).

    Parameters
    ----------
    problem : TwoStageProblem
        Its recourse must have a finite floor (:func:`recourse_floor`).
    options : SolverOptions, optional
        MIP gaps (the stopping gaps of the loop, :func:`stopping_tolerance`; each master runs
        at half of them, as its bound counts only ``incumbent − tolerance`` as proven) and
        time limit of each restricted master.
    initial : sequence of int, optional
        First subset (default scenario 0).
    per_round : int
        Scenarios added per round (>= 1).
    max_rounds : int
    time_limit : float, optional
        Wall-clock budget (s) of the whole loop; checked between rounds.
    start : ndarray, optional
        First-stage MIP start of the masters until an evaluated first stage is feasible in the
        master's whole subset (then the one of least restricted value is the start).
    executor : Executor, optional
        Runs the exact evaluations.
    eval_options : SolverOptions, optional
        Recourse solver options of the exact evaluations.
    log : callable, optional
        One progress line per round (and per scenario kernel).
    scenario_kernels : bool, default False
        Solve and evaluate the single-scenario master of every scenario before it joins the
        subset (module docstring, "Scenario kernels").

    Returns
    -------
    ScenarioAdditionResult

    Raises
    ------
    ScenarioAdditionError
        Bad settings, or a recourse without a finite floor.
    InfeasibleModelError
        A restricted master is infeasible (then so is the problem).
    SolverTimeLimitError
        The first master found no incumbent within its time limit.
    """
    if per_round < 1 or max_rounds < 1:
        raise ScenarioAdditionError("per_round and max_rounds must be >= 1")
    t0 = time.perf_counter()
    opts = options or SolverOptions()
    say = log or (lambda _s: None)
    n = problem.n_scenarios
    floor = recourse_floor(problem)
    if not np.all(np.isfinite(floor)):
        bad = int(np.flatnonzero(~np.isfinite(floor))[0])
        raise ScenarioAdditionError(
            f"the recourse of scenario {bad} has no finite lower bound over its column box; "
            "scenario addition needs one (use the extensive form)"
        )
    prob = np.asarray(problem.probability, dtype=float)
    chosen = np.zeros(n, dtype=bool)
    first = [0] if initial is None else [int(s) for s in initial]
    if not first or min(first) < 0 or max(first) >= n:
        raise ScenarioAdditionError(f"initial scenarios must be a non-empty subset of 0..{n - 1}")
    chosen[first] = True
    best_x, best_value, best_q = None, math.inf, np.full(n, math.inf)
    lower = -math.inf
    rounds: list[ScenarioAdditionRound] = []
    kernels: list[ScenarioAdditionRound] = []
    evaluated: list[tuple[np.ndarray, np.ndarray]] = []  # (x, per-scenario exact values)
    cost = np.asarray(problem.first_stage.cost, dtype=float)
    status = SolveStatus.TIME_LIMIT
    # masters run at half the requested gap: their bound is capped at ``incumbent −
    # tolerance`` (``Solution.dual_bound``), so a full-gap master could never close the loop
    master_opts = replace(opts, mip_gap=0.5 * opts.mip_gap, mip_abs_gap=0.5 * opts.mip_abs_gap)

    def master(
        subset: np.ndarray, x_start: np.ndarray | None, screen: np.ndarray | None = None
    ) -> ScenarioAdditionRound:
        """Solve the restricted master over ``subset``, evaluate its solution exactly, and
        update the bounds, the best first stage and the evaluated list. With ``screen``, the
        solution is first solved in those scenarios only, and evaluated in all of them only
        when it is feasible there (else its value is inf and ``n_infeasible`` counts the
        screen's failures)."""
        nonlocal best_x, best_value, best_q, lower
        in_subset = np.zeros(n, dtype=bool)
        in_subset[subset] = True
        dropped = float(prob[~in_subset] @ floor[~in_subset])  # the left-out floors
        t1 = time.perf_counter()
        try:
            ef = solve_extensive_form(
                problem, master_opts, scenarios=subset, scenario_weights=prob[subset],
                weight_total=float(prob[subset].sum()), start=x_start,
            )  # fmt: skip
        except InfeasibleModelError as exc:
            raise InfeasibleModelError(
                f"the restricted master over scenarios {subset.tolist()} is infeasible, so is "
                f"the problem: {exc}"
            ) from exc
        except SolverTimeLimitError as exc:
            lower = max(lower, exc.dual_bound + dropped)
            raise
        t2 = time.perf_counter()
        lower = max(lower, ef.bound + dropped)
        record = functools.partial(
            ScenarioAdditionRound,
            scenarios=tuple(int(s) for s in subset),
            master_objective=ef.objective,
            master_bound=ef.bound + dropped,
            master_seconds=t2 - t1,
        )
        if screen is not None and screen.size:
            ev = evaluate_first_stage(problem, ef.x, scenarios=screen, executor=executor,
                                      options=eval_options, desc=None, farkas=False)  # fmt: skip
            if ev.n_infeasible:
                return record(value=math.inf, n_infeasible=ev.n_infeasible,
                              evaluate_seconds=time.perf_counter() - t2)  # fmt: skip
        ev = evaluate_first_stage(
            problem, ef.x, executor=executor, options=eval_options, desc=None, farkas=False
        )
        q = ev.objectives  # inf where infeasible or unresolved
        evaluated.append((ef.x, q))
        if ev.expected_objective < best_value:
            best_x, best_value, best_q = ef.x, ev.expected_objective, q
        return record(value=ev.expected_objective, n_infeasible=ev.n_infeasible,
                      evaluate_seconds=time.perf_counter() - t2)  # fmt: skip

    def line(what: str, r: ScenarioAdditionRound) -> str:
        return (
            f"{what}, master {r.master_objective:.6g} (bound {r.master_bound:.6g}) in "
            f"{r.master_seconds:.1f} s; exact value {r.value:.6g} ({r.n_infeasible} "
            f"infeasible); best {best_value:.6g}, gap {100 * relative_gap(best_value, lower):.4f} %"
        )

    def proven() -> bool:
        return math.isfinite(best_value) and best_value - lower <= stopping_tolerance(
            best_value, opts
        ) * (1.0 + 1e-9)

    def start_for(subset: np.ndarray) -> np.ndarray | None:
        """The evaluated first stage feasible in all of ``subset`` with the least restricted
        value (a master solution infeasible in an added scenario would be rejected by HiGHS,
        which then searches for an incumbent from scratch), else the caller's ``start``."""
        values = [cost @ x + prob[subset] @ q[subset] for x, q in evaluated]
        if not values or not np.isfinite(min(values)):
            return start
        return evaluated[int(np.argmin(values))][0]

    for k in range(max_rounds):
        subset = np.flatnonzero(chosen)
        try:
            rnd = master(subset, start_for(subset))
        except SolverTimeLimitError:
            if best_x is None:
                raise
            say(f"round {k + 1}: master over {subset.size} scenarios found no incumbent")
            break
        rounds.append(rnd)
        say(line(f"round {k + 1}: {subset.size} scenarios", rnd))
        if proven():
            status = SolveStatus.OPTIMAL
            break
        if chosen.all():  # the master was the full extensive form
            break
        if time_limit is not None and time.perf_counter() - t0 >= time_limit:
            break
        add = _additions(evaluated[-1][1], floor, prob, chosen, per_round)
        if add.size == 0:  # every left-out scenario sits at its floor: only the master's
            # own gap (a time-limited master) is left
            break
        if scenario_kernels:  # each kernel is evaluated in full only when it is feasible
            # in the grown subset (a start candidate); proving a recourse infeasible is slow
            grown = np.union1d(subset, add)
            for s in add:
                try:
                    kernels.append(
                        master(np.array([s]), start_for(np.array([s])), grown[grown != s])
                    )
                except SolverTimeLimitError:
                    say(f"kernel of scenario {s}: no incumbent within the master time limit")
                    continue
                say(line(f"kernel of scenario {s}", kernels[-1]))
            if proven():
                status = SolveStatus.OPTIMAL
                break
        chosen[add] = True
    if best_x is None or not math.isfinite(best_value):
        raise InfeasibleModelError(
            "scenario addition found no first stage feasible in every scenario "
            f"within {len(rounds)} rounds"
        )
    return ScenarioAdditionResult(
        decision=problem.decode(best_x),
        x=best_x,
        objective=best_value,
        bound=lower,
        gap=relative_gap(best_value, lower),
        status=status,
        rounds=tuple(rounds),
        recourse=best_q,
        wall_seconds=time.perf_counter() - t0,
        kernels=tuple(kernels),
    )
