"""Neural two-stage stochastic Volt-VAR (paper B §III-B/E, eq 22; METHODS §4).

The expected recourse of the 2S-VVO is replaced by a trained surrogate
(:class:`~gridrecourse.learning.voltvar_net.VoltVarSurrogate`)::

    min  cᵀx + σ_y · MLP([φ(x), e]) + μ_y                                  (eqs 22–23)
    s.t. every first-stage row of the problem (taps, tap-change limits, switch states,
         radiality, operation limits), x integer where the problem says so

with ``e = E(Ξ)`` the scenario embedding (one encoder forward pass over the whole scenario set,
so the MILP does not grow with the scenarios) and the MLP written as MILP rows with IBP bounds
(:func:`~gridrecourse.formulation.relu.add_relu_network`). The first stage is
:meth:`~gridrecourse.problems.volt_var.VoltVarProblem.first_stage_model` unchanged (exact), and
the decision is then evaluated exactly — one recourse MILP per scenario
(:func:`~gridrecourse.evaluation.out_of_sample.evaluate_first_stage`).

Feasibility rounds (our addition)
---------------------------------
The surrogate prices a first stage by its expected recourse; it may not see that a rare
scenario of the set makes the recourse infeasible (README, "Paper B"). With
``feasibility_rounds = r`` the method then adds, up to ``r`` times, the recourse rows of the
scenarios in which the evaluated decision is infeasible or unresolved to the surrogate MILP
(feasibility only: weight 0, so the objective stays ``cᵀx + NN``), solves it again from the
start candidate the surrogate prices lowest among those feasible in the added scenarios, and
evaluates the new decision exactly. Each round costs a larger MILP, the candidates' recourse
in the added scenarios and one evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from gridrecourse.errors import InfeasibleModelError, SolverTimeLimitError
from gridrecourse.evaluation.out_of_sample import OutOfSampleResult, evaluate_first_stage
from gridrecourse.execution import Executor
from gridrecourse.formulation.relu import BoundMode, add_relu_network
from gridrecourse.learning.voltvar_data import (
    feature_map,
    initial_first_stage,
    neutral_first_stage,
)
from gridrecourse.learning.voltvar_net import VoltVarSurrogate
from gridrecourse.problems.base import add_second_stage_blocks, recourse_floor
from gridrecourse.problems.volt_var import VoltVarProblem
from gridrecourse.solvers.options import SolverOptions

__all__ = ["NeuralVoltVarResult", "solve_neural_voltvar"]


@dataclass(frozen=True, eq=False)
class NeuralVoltVarResult:
    """Outcome of the neural method.

    Attributes
    ----------
    x : ndarray, shape (n_x,)
        First stage (complete, integer-rounded).
    surrogate_objective : float
        ``cᵀx + NN(x, Ξ)`` at the MILP optimum ($).
    predicted_recourse : float
        ``NN(x, Ξ)`` ($).
    first_stage_cost : float
        ``cᵀx`` ($).
    objective : float or None
        Exact expected cost of ``x`` ($; ``None`` when not evaluated).
    n_binaries : int
        ReLU binaries of the embedding.
    stable_neurons : (int, int, int)
        (inactive, active, unstable) hidden neurons under the bounds used.
    mode : BoundMode
    encode_seconds, solve_seconds, evaluate_seconds : float
        ``solve_seconds`` includes the model build and any LP bound tightening.
    bound_seconds : float
        LP tightening of the neuron bounds (:attr:`BoundMode.LP`; 0 otherwise).
    status : str
    mip_gap : float
        HiGHS's gap of the surrogate MILP.
    feasibility_scenarios : tuple of int
        Scenarios whose recourse rows were added in feasibility rounds (module docstring).
    rounds : int
        Surrogate MILP solves (1 + feasibility rounds taken).
    n_infeasible : int or None
        Scenarios in which ``x`` is infeasible or unresolved (None when not evaluated).
    evaluation : OutOfSampleResult or None
        The exact evaluation of ``x`` (None when not evaluated).
    """

    x: np.ndarray
    surrogate_objective: float
    predicted_recourse: float
    first_stage_cost: float
    objective: float | None
    n_binaries: int
    stable_neurons: tuple[int, int, int]
    mode: BoundMode
    encode_seconds: float
    solve_seconds: float
    evaluate_seconds: float
    status: str
    mip_gap: float
    feasibility_scenarios: tuple[int, ...] = ()
    bound_seconds: float = 0.0
    rounds: int = 1
    n_infeasible: int | None = None
    evaluation: OutOfSampleResult | None = None


def solve_neural_voltvar(
    problem: VoltVarProblem,
    surrogate: VoltVarSurrogate,
    options: SolverOptions | None = None,
    *,
    mode: BoundMode = BoundMode.IBP,
    big_m: float = 1.0e4,
    evaluate: bool = True,
    executor: Executor | None = None,
    eval_options: SolverOptions | None = None,
    start: Sequence[np.ndarray] | None = None,
    feasibility_rounds: int = 0,
    keep_values: bool = False,
    tighten_time_limit: float | None = None,
) -> NeuralVoltVarResult:
    """Solve the surrogate MILP (eq 22) and evaluate its decision exactly.

    Parameters
    ----------
    problem : VoltVarProblem
        Feeder, settings and the scenario set (its embedding enters the MILP).
    surrogate : VoltVarSurrogate
        Checked against ``problem`` first (:class:`SurrogateMismatchError` otherwise).
    options : SolverOptions, optional
        Surrogate MILP options; ``time_limit`` is the wall budget of the whole method
        (encoding, model build and MILP: the MILP gets what is left, at least 1 s).
    mode : BoundMode
        IBP bounds (default), IBP tightened by LP over the first stage's relaxation
        (:func:`~gridrecourse.formulation.relu.lp_tightened_bounds`) or a uniform big-M
        (baseline).
    evaluate : bool
        Solve the recourse of every scenario at the decision (exact objective).
    executor : Executor, optional
        Where the exact evaluation runs.
    start : sequence of ndarray, optional
        Candidate first stages (complete, feasible); the one the surrogate prices lowest is
        given to HiGHS as a MIP start with the network's activations. Default: the neutral
        taps and the initial taps held (both with the normal switch states) and the kernel
        first stages the network's training data were perturbed from
        (:meth:`VoltVarSurrogate.start_candidates`); ``()`` for none.
    feasibility_rounds : int, default 0
        Rounds that add the recourse rows of the scenarios the decision is infeasible in
        (module docstring); each re-solve gets ``options.time_limit`` again. Needs
        ``evaluate``.
    keep_values : bool, default False
        Keep the recourse values in the returned evaluation
        (:func:`~gridrecourse.evaluation.out_of_sample.evaluate_first_stage`).
    tighten_time_limit : float, optional
        Seconds of the LP tightening (:attr:`BoundMode.LP`); default half of what is left of
        ``options.time_limit`` after the encoding (none without a limit). It counts in the
        method's budget.

    Returns
    -------
    NeuralVoltVarResult
    """
    surrogate.check(problem)
    if feasibility_rounds < 0 or int(feasibility_rounds) != feasibility_rounds:
        raise ValueError(f"feasibility_rounds must be an integer >= 0, got {feasibility_rounds}")
    if feasibility_rounds and not evaluate:
        raise ValueError("feasibility_rounds need the exact evaluation (evaluate=True)")
    t0 = time.perf_counter()
    e = surrogate.embed(problem)
    net = surrogate.main_network()
    n_feat = net.n_inputs - len(e)
    net = net.with_fixed_inputs(np.arange(n_feat, net.n_inputs), e)
    t1 = time.perf_counter()
    options = options or SolverOptions(mip_gap=1e-4, time_limit=60.0)
    if tighten_time_limit is None and options.time_limit is not None:
        tighten_time_limit = max(0.0, options.time_limit - (t1 - t0)) / 2.0
    f, _ = feature_map(problem)
    if f.shape[0] != n_feat:
        raise ValueError(
            f"surrogate expects {n_feat} first-stage features, problem has {f.shape[0]}"
        )
    fs = problem.first_stage
    model, blocks = problem.first_stage_model()
    inputs = [
        (blocks[v.name], f[:, fs.slice(v.name)]) for v in fs.variables if f[:, fs.slice(v.name)].nnz
    ]
    emb = add_relu_network(
        model,
        net,
        inputs,
        np.zeros(n_feat),
        np.ones(n_feat),
        name="surrogate",
        mode=mode,
        big_m=big_m,
        tighten_time_limit=tighten_time_limit,
    )
    # the priced recourse is max(network, floor): the expected recourse is a curtailment cost
    # (>= 0, recourse_floor), and a network extrapolating below it is exploited by the MILP
    # (measured: a predicted -22 966 $ led to a 5000 $ first stage infeasible in a scenario)
    floor = float(np.asarray(problem.probability) @ recourse_floor(problem))
    floor_std = (floor - surrogate.target_mean) / surrogate.target_std
    priced = model.add_variables("surrogate-priced", 1, lb=floor_std, cost=surrogate.target_std)
    model.add_constraints(
        "surrogate-priced_above_output",
        [(priced, sp.identity(1, format="csr")), (emb.output, -sp.identity(1, format="csr"))],
        lb=0.0,
    )
    if start is None:
        start = [
            neutral_first_stage(problem),
            initial_first_stage(problem),
            *surrogate.start_candidates(problem),
        ]
    cand = np.vstack([np.asarray(s, dtype=float) for s in start]) if len(start) else None
    cand_ok = None if cand is None else np.ones(len(cand), dtype=bool)  # in the added scenarios

    def set_start(ok: np.ndarray | None = None) -> None:
        """MIP start: the candidate first stage with the lowest surrogate value (among those
        ``ok``), with the network's activations at it (HiGHS alone may find no incumbent
        within the limit)."""
        if cand is None or (ok is not None and not ok.any()):
            return
        out = np.maximum(net.forward((f @ cand.T).T)[:, 0], floor_std)
        value = np.where(True if ok is None else ok, cand @ fs.cost + surrogate.target_std * out,
                         np.inf)  # fmt: skip
        x0 = cand[int(np.argmin(value))]
        values = {blocks[v.name]: x0[fs.slice(v.name)] for v in fs.variables}
        values |= emb.start_values(f @ x0)
        values[priced] = np.maximum(values[emb.output], floor_std)
        model.set_start(values)

    set_start()
    budget = options
    if options.time_limit is not None:
        left = options.time_limit - (time.perf_counter() - t0)
        options = replace(options, time_limit=max(1.0, left))
    sol = model.solve(options)
    x = _decision(sol, blocks, fs)
    solve_s, eval_s = time.perf_counter() - t1, 0.0
    objective, n_bad, added, rounds, ev = None, None, [], 1, None
    exact = eval_options or SolverOptions(mip_gap=1e-4)
    while evaluate:
        t2 = time.perf_counter()
        ev = evaluate_first_stage(problem, x, executor=executor, options=exact, desc=None,
                                  farkas=False, keep_values=keep_values)  # fmt: skip
        eval_s += time.perf_counter() - t2
        objective, n_bad = float(ev.expected_objective), int(np.sum(~ev.feasible))
        new = [int(s) for s in ev.scenario_indices[~ev.feasible] if int(s) not in added]
        if rounds > feasibility_rounds or not new:
            break
        add_second_stage_blocks(
            model, problem.second_stage, np.zeros(len(new)),
            data=problem.scenario_data(np.array(new)), first_stage=blocks, first_stage_spec=fs,
            prefix=f"round{rounds}-",
        )  # fmt: skip
        added += new
        if cand is not None:  # restart from the best candidate feasible in those scenarios
            t2 = time.perf_counter()  # each round screens only its new scenarios
            cand_ok &= [
                evaluate_first_stage(problem, c, scenarios=new, executor=executor,
                                     options=exact, desc=None, farkas=False).n_infeasible == 0
                for c in cand
            ]  # fmt: skip
            set_start(cand_ok)
            eval_s += time.perf_counter() - t2
        t2 = time.perf_counter()
        try:
            sol = model.solve(budget)
        except SolverTimeLimitError:  # no first stage found in time: keep the last one
            solve_s += time.perf_counter() - t2
            break
        except InfeasibleModelError as exc:
            raise InfeasibleModelError(
                f"no first stage admits a feasible recourse in scenarios {sorted(added)}: the "
                f"2S-VVO itself is infeasible ({exc})"
            ) from exc
        solve_s += time.perf_counter() - t2
        x, rounds = _decision(sol, blocks, fs), rounds + 1
    first = float(fs.cost @ x)
    predicted = float(np.maximum(net.forward((f @ x)[None, :])[0, 0], floor_std))
    predicted = predicted * surrogate.target_std + surrogate.target_mean
    return NeuralVoltVarResult(
        x=x,
        surrogate_objective=first + predicted,
        predicted_recourse=predicted,
        first_stage_cost=first,
        objective=objective,
        n_binaries=emb.n_binaries,
        stable_neurons=emb.bounds.stable_counts(),
        mode=BoundMode(mode),
        bound_seconds=0.0 if emb.tightening is None else emb.tightening.seconds,
        encode_seconds=t1 - t0,
        solve_seconds=solve_s,
        evaluate_seconds=eval_s,
        status=str(sol.status),
        mip_gap=float(sol.mip_gap),
        feasibility_scenarios=tuple(added),
        rounds=rounds,
        n_infeasible=n_bad,
        evaluation=ev,
    )


def _decision(sol, blocks, fs) -> np.ndarray:
    """The complete first stage of a surrogate MILP solution, integers rounded."""
    x = np.concatenate([sol.value(blocks[v.name]) for v in fs.variables])
    x[fs.integer] = np.round(x[fs.integer])
    return x
