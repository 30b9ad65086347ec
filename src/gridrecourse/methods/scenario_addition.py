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

This pays when few scenarios decide the first stage, as in paper B's Volt-VAR problem on the
IEEE 123 feeder: its cost is mostly tap and switch operations, whose only link to the
scenarios is second-stage feasibility (Range B), so one or two scenarios fix the answer
(measurements: ``benchmarks/results/voltvar`` and the README). It is an exact method with a
proven gap, not a heuristic: the result reports both bounds.
"""

from __future__ import annotations

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
        First-stage MIP start of the masters until one of their solutions is feasible in every
        scenario (then the best such solution is the start).
    executor : Executor, optional
        Runs the exact evaluations.
    eval_options : SolverOptions, optional
        Recourse solver options of the exact evaluations.
    log : callable, optional
        One progress line per round.

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
    status = SolveStatus.TIME_LIMIT
    x_start = start
    # masters run at half the requested gap: their bound is capped at ``incumbent −
    # tolerance`` (``Solution.dual_bound``), so a full-gap master could never close the loop
    master_opts = replace(opts, mip_gap=0.5 * opts.mip_gap, mip_abs_gap=0.5 * opts.mip_abs_gap)
    for k in range(max_rounds):
        subset = np.flatnonzero(chosen)
        mass = float(prob[subset].sum())
        dropped = float(prob[~chosen] @ floor[~chosen])  # the left-out scenarios' floors
        t1 = time.perf_counter()
        try:
            ef = solve_extensive_form(
                problem, master_opts, scenarios=subset, scenario_weights=prob[subset],
                weight_total=mass, start=x_start,
            )  # fmt: skip
        except SolverTimeLimitError as exc:
            if best_x is None:
                raise
            lower = max(lower, exc.dual_bound + dropped)
            say(f"round {k + 1}: master over {subset.size} scenarios found no incumbent")
            break
        except InfeasibleModelError as exc:
            raise InfeasibleModelError(
                f"the restricted master over scenarios {subset.tolist()} is infeasible, so is "
                f"the problem: {exc}"
            ) from exc
        t2 = time.perf_counter()
        master_bound = ef.bound + dropped
        lower = max(lower, master_bound)
        ev = evaluate_first_stage(
            problem, ef.x, executor=executor, options=eval_options, desc=None, farkas=False
        )
        q = ev.objectives  # inf where infeasible or unresolved
        value = ev.expected_objective
        rounds.append(
            ScenarioAdditionRound(
                scenarios=tuple(int(s) for s in subset),
                master_objective=ef.objective,
                master_bound=master_bound,
                value=value,
                n_infeasible=ev.n_infeasible,
                master_seconds=t2 - t1,
                evaluate_seconds=time.perf_counter() - t2,
            )
        )
        if value < best_value:
            best_x, best_value, best_q = ef.x, value, q
        # the next master starts from the best first stage feasible in every scenario, else
        # from the caller's start (this master's solution is infeasible in a scenario the next
        # master adds, so HiGHS would reject it and search for an incumbent from scratch)
        x_start = best_x if best_x is not None else start
        gap = relative_gap(best_value, lower)
        say(
            f"round {k + 1}: {subset.size} scenarios, master {ef.objective:.6g} "
            f"(bound {master_bound:.6g}) in {t2 - t1:.1f} s; exact value {value:.6g} "
            f"({ev.n_infeasible} infeasible); best {best_value:.6g}, gap {100 * gap:.4f} %"
        )
        if math.isfinite(best_value) and best_value - lower <= stopping_tolerance(
            best_value, opts
        ) * (1.0 + 1e-9):
            status = SolveStatus.OPTIMAL
            break
        if chosen.all():  # the master was the full extensive form
            break
        if time_limit is not None and time.perf_counter() - t0 >= time_limit:
            break
        add = _additions(q, floor, prob, chosen, per_round)
        if add.size == 0:  # every left-out scenario sits at its floor: only the master's
            # own gap (a time-limited master) is left
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
    )
