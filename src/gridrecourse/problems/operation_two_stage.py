"""Day-ahead operation (paper D) as a two-stage stochastic program on the shared contract.

The same decision as :mod:`gridrecourse.problems.operation` (METHODS §6), stated as the
contract's two stages (:mod:`gridrecourse.problems.base`) so that every two-stage method
(extensive form, progressive hedging, exact parallel evaluation) runs on it and can be compared
with DT, IGDT and CL-DIGDT on the same instance::

    min_x  Λ1(x) + Σ_ω π_ω Λ2(x, ξ_ω)

* **First stage** ``x`` (eqs 1–5): DG outputs ``dg-p``, purchases ``purchase``, storage
  ``ess-charge``/``ess-discharge`` with mode binaries ``ess-mode`` and state of charge
  ``ess-soc`` (cyclic), and the plan at the forecast net load (the network copy of slot 0 of
  :func:`~gridrecourse.problems.operation.build_operation_model`: lossy LinDist3Flow, voltage
  band, thermal polygons, no export; its blocks carry the prefix ``plan-``). Cost ``Λ1`` on the
  ``dg-p`` and ``purchase`` columns ($).
* **Second stage** per scenario ω (one day, eqs 6–9): DG adjustment ``dg-up``/``dg-down``,
  reactive output ``dg-q``, adjusted-output ramps, purchase adjustment ``grid-buy``/``grid-sell``,
  lossy LinDist3Flow with the voltage band and thermal limits; cost ``Λ2`` ($, the
  ``recourse-cost`` column). Linking blocks: ``dg-adjust`` (``dg-p``), ``ess-link``
  (``ess-charge``, ``ess-discharge``) and ``grid-adjust`` (``purchase``).
* **Scenario** ω: a day's load multipliers and PV per unit of rating; they enter the network
  rows' right-hand sides only (the ``xi-load``/``xi-pv`` columns of the builder are folded into
  them), together with the day's loss terms (eq 8f). Equal probabilities by default.

**One builder.** Both stages are read from models of
:func:`~gridrecourse.problems.operation.build_operation_model` with
:func:`~gridrecourse.problems.spec_blocks.spec_blocks`: the plan-only model (``n_copies=0``) is
the first stage; the one-copy recourse model (``n_copies=1``, ``with_plan=False``) without its
first-stage columns is the second stage, its terms on those columns becoming the technology
matrices. There is no second copy of the equations.

**Loss terms** (eq 8f) are fixed right-hand-side terms evaluated at a reference operating point
(METHODS §1.5). The plan uses ``plan_losses`` (the DT plan's, as the robust models do). Each
scenario's recourse uses the losses at that day's net load with the injections of
``loss_reference`` (a schedule), so ``Q(x, ξ_ω)`` is an LP in ``x`` as the contract requires:
evaluating a schedule on a problem whose ``loss_reference`` is that schedule gives exactly
:func:`gridrecourse.evaluation.operation.evaluate_schedule`'s figures; comparing several
schedules on one problem uses one common reference for all (the DT schedule by default in
:func:`gridrecourse.methods.igdt.operation_problem`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from gridrecourse.errors import (
    GridRecourseError,
    InfeasibleModelError,
)
from gridrecourse.formulation.injections import fixed_net_load
from gridrecourse.formulation.periods import by_period, tile_periods
from gridrecourse.network.math_model import MathFeeder
from gridrecourse.physics.lindistflow import LinDist3Flow, LossTerms
from gridrecourse.problems.base import (
    ConstraintBlockSpec,
    FirstStageSpec,
    LinkingBlock,
    ScenarioData,
    SecondStageSpec,
    TwoStageProblem,
    VariableBlockSpec,
)
from gridrecourse.problems.operation import (
    FirstStageSchedule,
    OperationCase,
    OperationModel,
    build_operation_model,
)
from gridrecourse.problems.spec_blocks import SpecBlocks, spec_blocks
from gridrecourse.solvers.highs import LinearModel
from gridrecourse.solvers.options import SolverOptions

__all__ = ["OperationProblem", "OperationProblemError"]

#: Prefix of the plan's (slot 0) blocks in the first stage (the recourse has the same names).
PLAN_PREFIX = "plan-"
#: Name of the recourse cost column (the second stage's objective, $).
RECOURSE_COST = "recourse-cost"


class OperationProblemError(GridRecourseError, ValueError):
    """Scenario data or a schedule does not fit the two-stage operation problem."""


def _first_stage_names(om: OperationModel) -> tuple[str, ...]:
    """Blocks of the builder that are first-stage decisions (not the plan's network copy)."""
    bat = om.battery
    blocks = [om.dg_p, om.purchase, om.first_cost, bat.charge, bat.discharge, bat.soc, bat.mode]
    return tuple(b.name for b in blocks if b is not None)


def _fold(
    blocks: SpecBlocks, fixed: dict[str, np.ndarray | None]
) -> tuple[
    tuple[VariableBlockSpec, ...], tuple[ConstraintBlockSpec, ...], dict[str, sp.csr_matrix]
]:
    """Remove fixed column blocks: their terms move to the row bounds.

    Parameters
    ----------
    fixed : dict of str to ndarray or None
        Column values per block (``None``: the terms are returned, not applied).

    Returns
    -------
    variables, constraints
        Without the fixed blocks; row bounds shifted by ``−M v`` for given values.
    terms : dict of str to csr_matrix
        ``"<row block>|<column block>"`` → ``M`` of every removed term with no value (applied
        per scenario by the caller).
    """
    variables = tuple(v for v in blocks.variables if v.name not in fixed)
    constraints, removed = [], {}
    for c in blocks.constraints:
        terms = dict(c.terms)
        lb, ub = c.lb.copy(), c.ub.copy()
        for name in [n for n in terms if n in fixed]:
            m = terms.pop(name)
            if fixed[name] is None:
                removed[f"{c.name}|{name}"] = m
            else:
                shift = m @ fixed[name]
                lb, ub = lb - shift, ub - shift
        if not terms:
            raise OperationProblemError(
                f"constraint block {c.name!r} has terms on fixed blocks only (it would vanish)"
            )
        constraints.append(ConstraintBlockSpec(c.name, tuple(terms.items()), lb=lb, ub=ub))
    return variables, tuple(constraints), removed


def _nonempty(blocks: SpecBlocks) -> SpecBlocks:
    """Drop zero-size variable blocks, their terms, and constraint blocks without rows."""
    empty = {v.name for v in blocks.variables if v.size == 0}
    constraints = []
    for c in blocks.constraints:
        terms = tuple((n, m) for n, m in c.terms if n not in empty)
        if c.size and terms:
            constraints.append(ConstraintBlockSpec(c.name, terms, lb=c.lb, ub=c.ub))
    return SpecBlocks(tuple(v for v in blocks.variables if v.size), tuple(constraints))


class OperationProblem(TwoStageProblem[FirstStageSchedule]):
    """Day-ahead operation as a two-stage program (module docstring).

    Parameters
    ----------
    math : MathFeeder
    case : OperationCase
    price_per_mwh : ndarray, shape (T,)
        First-stage purchase price d_t ($/MWh).
    load : ndarray, shape (S, T, K_L)
        Load multipliers of each scenario (day).
    pv : ndarray, shape (S, T, K_PV)
        PV per unit of rating of each scenario.
    forecast_load : ndarray, shape (T, K_L)
    forecast_pv : ndarray, shape (T, K_PV)
        The forecast at which the plan is made (eqs 4–5).
    plan_losses : LossTerms, optional
        Loss terms (E, T) of the plan (default: at the forecast without devices).
    loss_reference : FirstStageSchedule, optional
        Injections of the scenarios' loss reference (default: none, i.e. each day's net load
        alone); ignored when ``lossy`` is False.
    lossy : bool
        Loss terms in the recourse (eq 8f); False: lossless recourse.
    probability : ndarray, shape (S,), optional
        Default equal.
    physics : LinDist3Flow, optional
        Not kept (instances stay picklable).

    Raises
    ------
    OperationProblemError
        Shapes that do not match, non-finite or negative data, bad probabilities.
    FeederInputError
        A device at a bus the feeder does not have.
    """

    name = "operation"

    def __init__(
        self,
        math: MathFeeder,
        case: OperationCase,
        price_per_mwh: np.ndarray,
        load: np.ndarray,
        pv: np.ndarray,
        *,
        forecast_load: np.ndarray,
        forecast_pv: np.ndarray,
        plan_losses: LossTerms | None = None,
        loss_reference: FirstStageSchedule | None = None,
        lossy: bool = True,
        probability: np.ndarray | None = None,
        physics: LinDist3Flow | None = None,
    ):
        self.math, self.case = math, case
        self.name = f"operation-{math.name}"
        price = np.asarray(price_per_mwh, dtype=float)
        load, pv = np.asarray(load, dtype=float), np.asarray(pv, dtype=float)
        fl, fp = np.asarray(forecast_load, float), np.asarray(forecast_pv, float)
        T = len(price)
        if load.ndim != 3 or pv.ndim != 3 or load.shape[:2] != pv.shape[:2]:
            raise OperationProblemError(
                f"load and pv must be (S, T, K) with the same S and T, got {load.shape}, {pv.shape}"
            )
        s, k_l, k_p = load.shape[0], load.shape[2], pv.shape[2]
        if s < 1 or load.shape[1] != T:
            raise OperationProblemError(
                f"need >= 1 scenario of T = {T} hours (the price's length), got {load.shape}"
            )
        if fl.shape != (T, k_l) or fp.shape != (T, k_p):
            raise OperationProblemError(
                f"forecasts must be (T, K_L) = {(T, k_l)} and (T, K_PV) = {(T, k_p)}, got "
                f"{fl.shape}, {fp.shape}"
            )
        for what, arr in (("load", load), ("pv", pv), ("forecast", np.r_[fl.ravel(), fp.ravel()])):
            if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise OperationProblemError(f"{what} must be finite and >= 0")
        if probability is None:
            prob = np.full(s, 1.0 / s)
        else:
            prob = np.asarray(probability, dtype=float).ravel()
            if prob.shape != (s,) or np.any(prob < 0) or not np.isclose(prob.sum(), 1.0):
                raise OperationProblemError(f"probability must be {s} values >= 0 summing to 1")
        self._probability = prob
        self.n_periods, self.n_load, self.n_pv = T, k_l, k_p
        physics = physics or LinDist3Flow(math)
        build = dict(n_load_sources=k_l, n_pv_sources=k_p, physics=physics, mode_binaries=True)
        # ---- first stage: the plan-only model (slot 0)
        plan = build_operation_model(math, case, price, n_copies=0, **build)
        decisions = _first_stage_names(plan)
        per_pu = plan.cost_per_pu(1.0)
        c_dg = np.array([g.cost_per_mwh for g in case.dgs], dtype=float)
        plan.model.set_cost(plan.dg_p, tile_periods(c_dg * per_pu, T))
        plan.model.set_cost(plan.purchase, price * per_pu)
        if plan_losses is None:
            plan_losses = plan.losses_at(*plan.reference_net_load(fl[None], fp[None]))
        plan.set_losses(plan_losses)
        # ---- second stage: one recourse copy, first-stage columns free (they become T)
        peak = float(max(load.max(), fl.max()))
        rec = build_operation_model(
            math, case, price, n_copies=1, with_plan=False, peak_multiplier=peak, **build
        )
        rec.model.set_cost(rec.recourse_cost, 1.0)
        rec_blocks = _nonempty(spec_blocks(rec.model))
        # second stage: fold the scenario's xi into the rows, split the decisions off (→ T)
        xi_names = (rec.xi_load.name, rec.xi_pv.name)
        r_vars, r_rows, xi_terms = _fold(rec_blocks, dict.fromkeys(xi_names))
        variables = tuple(v for v in r_vars if v.name not in decisions)
        rows = []  # (W block, its terms on the decisions)
        for c in r_rows:
            terms = dict(c.terms)
            on_x = {n: terms.pop(n) for n in list(terms) if n in decisions}
            if terms:  # else: rows of the first stage only (battery, first-stage cost)
                rows.append(
                    (ConstraintBlockSpec(c.name, tuple(terms.items()), lb=c.lb, ub=c.ub), on_x)
                )
        second_names = {v.name for v in variables} | {c.name for c, _ in rows}

        def rename(name: str) -> str:
            return name if name in decisions or name not in second_names else PLAN_PREFIX + name

        plan_blocks = _nonempty(spec_blocks(plan.model))
        p_vars, p_rows, _ = _fold(
            plan_blocks, {plan.xi_load.name: fl.ravel(), plan.xi_pv.name: fp.ravel()}
        )
        first = FirstStageSpec(
            tuple(replace(v, name=rename(v.name)) for v in p_vars),
            tuple(
                ConstraintBlockSpec(
                    rename(c.name), tuple((rename(n), m) for n, m in c.terms), lb=c.lb, ub=c.ub
                )
                for c in p_rows
            ),
        )
        links = [
            LinkingBlock(
                c.name,
                sp.hstack(
                    [on_x.get(v.name, sp.csr_matrix((c.size, v.size))) for v in first.variables],
                    format="csr",
                ),
            )
            for c, on_x in rows
            if on_x
        ]
        constraints = [c for c, _ in rows]
        self._first = first
        self._second = SecondStageSpec(variables, tuple(constraints), tuple(links))
        # ---- scenario right-hand sides (vectorized over days: one model of S·T periods)
        for arr in (load, pv, prob):
            arr.setflags(write=False)
        self.load, self.pv, self.price_per_mwh = load, pv, price
        self.lossy = bool(lossy)
        self.loss_reference = loss_reference if lossy else None
        #: the recourse builder and the folded xi terms (not pickled: they hold the physics)
        self._builder = (rec, xi_terms)
        self._scenario_rows = self._scenario_rhs(rec, xi_terms, self.loss_reference)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_builder", None)
        return state

    def with_loss_reference(self, schedule: FirstStageSchedule) -> OperationProblem:
        """The same problem with the scenarios' loss terms at ``schedule``'s injections.

        Only the scenario right-hand sides are recomputed (the specs are shared). A lossless
        problem is returned unchanged.

        Raises
        ------
        OperationProblemError
            On an unpickled copy (the builder is not pickled): construct a new problem.
        """
        if not self.lossy:
            return self
        builder = self.__dict__.get("_builder")
        if builder is None:
            raise OperationProblemError(
                "with_loss_reference needs the recourse builder, which is not pickled; build "
                "a new OperationProblem with loss_reference="
            )
        new = copy.copy(self)
        new.loss_reference = schedule
        new._scenario_rows = new._scenario_rhs(*builder, schedule)
        return new

    # ------------------------------------------------------------------ scenario data
    def _scenario_rhs(
        self,
        rec: OperationModel,
        xi_terms: dict[str, sp.csr_matrix],
        reference: FirstStageSchedule | None,
    ) -> dict[str, np.ndarray]:
        """Row bounds (S, rows) of every network block whose right-hand side varies by day."""
        load, pv = self.load, self.pv
        s, T = load.shape[0], self.n_periods
        math, net = self.math, rec.net
        losses = None
        if self.lossy:
            ref = {}
            if reference is not None:
                ref = dict(
                    dg_kw=reference.dg_kw,
                    dg_kvar=reference.dg_kvar,
                    ess_kw=reference.discharge_kw - reference.charge_kw,
                )
            losses = rec.losses_at(*rec.reference_net_load(load, pv, **ref))
        n_loads, n_pv = len(math.load_names), len(math.pv_names)
        p0, q0 = fixed_net_load(
            math,
            np.zeros((n_loads, 1)),
            np.zeros((n_loads, 1)),
            pv_kw=np.zeros((n_pv, 1)),
            pv_kvar=np.zeros((n_pv, 1)),
        )
        p0 = np.tile(np.asarray(p0), (1, s * T))
        q0 = np.tile(np.asarray(q0), (1, s * T))
        rhs = replace(net, n_periods=s * T).rhs(p0, q0, losses=losses)
        rows = {
            net.p_balance.name: rhs.p_balance,
            net.q_balance.name: rhs.q_balance,
            net.voltage_drop.name: rhs.voltage_drop,
        }
        if net.substation_balance is not None and rhs.substation is not None:
            rows[net.substation_balance.name] = rhs.substation
        out = {name: np.asarray(v, dtype=float).reshape(s, -1) for name, v in rows.items()}
        values = {
            rec.xi_load.name: load.reshape(s, -1),
            rec.xi_pv.name: pv.reshape(s, -1),
        }
        for key, m in xi_terms.items():
            row, col = key.split("|")
            shift = (m @ values[col].T).T  # (S, rows)
            if row not in out:
                spec_row = next(c for c in self._second.constraints if c.name == row)
                out[row] = np.tile(spec_row.lb, (s, 1))
                if not np.array_equal(spec_row.lb, spec_row.ub):
                    raise OperationProblemError(f"uncertain terms in inequality rows {row!r}")
            out[row] = out[row] - shift
        for arr in out.values():
            arr.setflags(write=False)
        return out

    # ------------------------------------------------------------------ contract
    @property
    def first_stage(self) -> FirstStageSpec:
        """DG outputs, purchases, storage (modes, SOC) and the plan at the forecast."""
        return self._first

    @property
    def second_stage(self) -> SecondStageSpec:
        """One day's recourse; linking blocks ``dg-adjust``, ``ess-link``, ``grid-adjust``."""
        return self._second

    @property
    def probability(self) -> np.ndarray:
        """``π``, shape (S,)."""
        return self._probability

    def scenario_data(self, indices: Sequence[int] | np.ndarray) -> ScenarioData:
        """The days' network right-hand sides (net load and loss terms folded in)."""
        idx = np.asarray(indices, dtype=int).ravel()
        spec = self._second
        lb, ub = np.tile(spec.row_lb, (len(idx), 1)), np.tile(spec.row_ub, (len(idx), 1))
        for name, values in self._scenario_rows.items():
            rs = spec.row_slice(name)
            lb[:, rs] = ub[:, rs] = values[idx]
        return ScenarioData(indices=idx, row_lb=lb, row_ub=ub)

    @property
    def recourse_failures_reported(self) -> bool:
        """True: a schedule's scenario that HiGHS fails on warm and cold is counted
        (``n_solver_failures`` of the operation evaluation), not raised."""
        return True

    # ------------------------------------------------------------------ decisions
    def _units(self) -> tuple[int, int]:
        return len(self.case.dgs), len(self.case.storage)

    def decode(self, x: np.ndarray) -> FirstStageSchedule:
        """The schedule of a first-stage vector (kW, kvar; cost ``Λ1`` in $)."""
        x = np.asarray(x, dtype=float).ravel()
        fs, T = self._first, self.n_periods
        G, J = self._units()
        s_base = self.math.s_base_kva

        def mat(name: str, n: int) -> np.ndarray:
            return x[fs.slice(name)].reshape(T, n).T * s_base

        return FirstStageSchedule(
            dg_kw=mat("dg-p", G),
            dg_kvar=mat(PLAN_PREFIX + "dg-q", G),
            charge_kw=mat("ess-charge", J),
            discharge_kw=mat("ess-discharge", J),
            purchase_kw=x[fs.slice("purchase")] * s_base,
            cost=float(fs.cost @ x),
        )

    def first_stage_vector(
        self, schedule: FirstStageSchedule, options: SolverOptions | None = None
    ) -> np.ndarray:
        """``x`` of a schedule: its decisions, the plan's network completed by one LP.

        The decision columns (``dg-p``, ``purchase``, ``ess-charge``, ``ess-discharge``) are
        fixed to the schedule; the plan's network columns and the state of charge are solved
        for at the forecast (storage modes relaxed, then set to ``charge > discharge``).

        Raises
        ------
        OperationProblemError
            The schedule has the wrong shape or is not a feasible plan at the forecast.
        """
        fs, T = self._first, self.n_periods
        G, J = self._units()
        s_base = self.math.s_base_kva
        fixed = {
            "dg-p": by_period(np.asarray(schedule.dg_kw) / s_base),
            "purchase": np.asarray(schedule.purchase_kw, dtype=float) / s_base,
            "ess-charge": by_period(np.asarray(schedule.charge_kw) / s_base),
            "ess-discharge": by_period(np.asarray(schedule.discharge_kw) / s_base),
        }
        for name, v in fixed.items():
            if v.shape != (fs.slice(name).stop - fs.slice(name).start,):
                raise OperationProblemError(
                    f"schedule's {name} has {v.size} values, the first stage needs "
                    f"{fs.slice(name).stop - fs.slice(name).start} (G = {G}, J = {J}, T = {T})"
                )
        m = LinearModel(f"plan-completion-{self.math.name}")
        blocks = {}
        for v in fs.variables:
            lb, ub = v.lb, v.ub
            if v.name in fixed:
                lb = ub = fixed[v.name]
            blocks[v.name] = m.add_variables(v.name, v.size, lb=lb, ub=ub)
        for c in fs.constraints:
            m.add_constraints(c.name, [(blocks[n], t) for n, t in c.terms], lb=c.lb, ub=c.ub)
        try:
            sol = m.solve(options)
        except InfeasibleModelError as exc:
            raise OperationProblemError(
                f"the schedule is not a feasible plan at the forecast on {self.math.name!r} "
                f"(DG/storage limits, ramps, energy or the network at the forecast): {exc}"
            ) from exc
        x = np.concatenate([sol.value(blocks[v.name]) for v in fs.variables])
        mode = "ess-mode"
        if mode in blocks:
            x[fs.slice(mode)] = (fixed["ess-charge"] > fixed["ess-discharge"]).astype(float)
        return x
