"""Training data of the neural 2S-VVO surrogate (paper B §III-F/G, eq 36; METHODS §4).

One *sample* is an instance of ``m`` scenarios (10) and a first stage ``x``; its label is the
expected recourse ``Σ_ω π_ω Q(x, ξ_ω)`` with every ``Q`` solved exactly (recourse MILP per
scenario). The first stages come from *kernel solutions* (deterministic VVO, i.e. the extensive
form on one scenario) perturbed and repaired (eq 36)::

    target  k̃_{r,t} = k*_{r,t}, z̃_{s,t} = z*_{s,t}  except a random share ρ of the entries
            (ρ = 0.2, the perturbation radius), redrawn uniformly in [0, K_r − 1] resp. [0, 1]
    repair  min ‖k − k̃‖₁ + ‖z − z̃‖₁  s.t. every first-stage row (radiality, tap and switch
            limits)                                                               (eq 36)

(paper B: "a random vector … restricts deviations to 20 % of the discrete variables"; our
reading: :attr:`Perturbation.REDRAW`). Redrawn entries scatter tap moves over the day: on the
IEEE 123 study case such samples cost thousands of dollars of operations, while the optimum
makes one tap move and one reconfiguration (500 $). :attr:`Perturbation.STEPS` (our addition)
samples that cheap neighbourhood: each regulator with probability ρ moves one position up or
down from a random hour on, each switchable switch with probability ρ toggles over a random
window; eq 36 repairs the result as before. Even there the recourse is infeasible in most
scenarios (IEEE 123, LM, 400 samples: 64 feasible in all 10 scenarios, 174 in none), so the
label of an infeasible scenario (``SurrogateConfig.infeasible_penalty``) shapes what the
network learns; feasible curtailment reached 49 161 $ in those data.

Kernel scenarios. :attr:`KernelSelection.RANDOM` (paper B) solves the deterministic VVO on
``n_kernels`` random scenarios. :attr:`KernelSelection.COVERING` (our addition) chooses them
from a pool of ``kernel_pool`` scenarios one at a time: each next kernel is solved on the pool
scenario that the kernels so far serve worst (cheapest ``cᵀx + Q`` over the kernels, infinite
where none is feasible), so that the data surround the first stages the hard scenarios need
(measurements: README, "Paper B"). :attr:`KernelSelection.NESTED` (our addition) solves each
kernel on a growing *set* of pool scenarios: kernel ``k + 1`` is the VVO on the scenarios of
kernel ``k`` and the pool scenario kernel ``k`` serves worst, which is scenario addition on the
pool. A first stage feasible in every scenario of an instance with a rare hard scenario is then
among the kernels even when no single-scenario VVO returns one.

The recourse of every (sample, scenario) pair of a chunk runs through an executor
(:mod:`gridrecourse.execution`: in-process, process pool or Dask), one task per scenario.

Storage and resumption
----------------------
A data directory holds ``meta.json`` (feeder, settings, data settings and their hash),
``kernels.npz`` and ``chunk_00000.npz …``; every file is written to a temporary name and
renamed (atomic). A rerun with the same settings skips the finished chunks; a different
setting is refused (:class:`VoltVarDataError`). The instances are fixed by the seed: scenario
pool, kernel scenarios and each chunk's random stream (``seed``, chunk index) do not depend on
what ran before, so an interrupted and resumed run gives the same data as an uninterrupted one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from gridrecourse.errors import GridRecourseError, InfeasibleModelError
from gridrecourse.execution import Executor, InProcessExecutor
from gridrecourse.problems.base import is_unresolved
from gridrecourse.problems.volt_var import VoltVarProblem, voltvar_scenarios
from gridrecourse.solvers.options import SolverOptions

__all__ = [
    "DataConfig",
    "KernelSelection",
    "Perturbation",
    "VoltVarData",
    "VoltVarDataError",
    "feature_map",
    "generate_data",
    "load_data",
    "problem_fingerprint",
    "repair_first_stage",
    "scenario_features",
]

#: HiGHS's default ``mip_feasibility_tolerance``, which every data set generated before
#: :attr:`DataConfig.mip_feasibility_tolerance` existed used (left out of its key).
LEGACY_MIP_FEASIBILITY_TOLERANCE = 1e-6

#: Channels of the scenario features per node and hour: load p, load q, PV availability, each
#: pooled by min, mean and max over the instance's scenarios (eq 25).
N_CHANNELS = 9


class Perturbation(str, Enum):
    """How kernel first stages are perturbed (module docstring)."""

    REDRAW = "redraw"
    STEPS = "steps"


class KernelSelection(str, Enum):
    """Which scenarios the kernel solutions are computed on (module docstring)."""

    RANDOM = "random"
    COVERING = "covering"
    NESTED = "nested"


class VoltVarDataError(GridRecourseError, ValueError):
    """Data directory of other settings, or bad data settings."""


@dataclass(frozen=True)
class DataConfig:
    """Settings of the data generation.

    Attributes
    ----------
    n_samples : int
        Samples (instances) to generate.
    scenarios_per_instance : int
        ``m`` (10, paper B).
    radius : float
        Perturbation radius ρ (0.2, paper B Table II): share of the discrete entries redrawn
        (``REDRAW``), or probability of a step per regulator and of a toggle per switch
        (``STEPS``).
    perturbation : Perturbation
        ``REDRAW`` (paper B) or ``STEPS`` (module docstring).
    n_kernels : int
        Kernel solutions (deterministic VVO on one scenario each; on a set for ``NESTED``).
    kernel_selection : KernelSelection
        ``RANDOM``: kernel ``k`` on scenario ``k`` of a pool of ``n_kernels``. ``COVERING``
        (our addition): kernel 1 on the first scenario of a pool of ``kernel_pool``, each
        further one on the pool scenario that the kernels so far serve worst. ``NESTED`` (our
        addition): kernel ``k + 1`` on the scenarios of kernel ``k`` and the pool scenario
        kernel ``k`` serves worst (module docstring).
    kernel_pool : int
        Scenarios the ``COVERING`` and ``NESTED`` kernels are chosen from (each kernel is
        evaluated on all).
    initial_kernel : bool
        Also perturb the "do-nothing" first stage (initial taps held, clipped to the allowed
        range; switches in their normal states), the cheapest region, where the recourse
        becomes infeasible: the network must learn that boundary (our addition).
    chunk_size : int
        Samples per chunk file (the unit of resumption).
    seed : int
    scenario_perturbation : float
        ``r`` of :func:`~gridrecourse.problems.volt_var.voltvar_scenarios`.
    mip_gap : float
        Relative MIP gap of every recourse and kernel solve.
    time_limit : float
        Seconds per recourse MILP.
    kernel_time_limit : float
        Seconds per kernel solve.
    mip_feasibility_tolerance : float
        HiGHS ``mip_feasibility_tolerance`` of every kernel and recourse MILP (1e-9, as the
        ``voltvar`` command; why: README, Paper B).
    """

    n_samples: int = 200
    scenarios_per_instance: int = 10
    radius: float = 0.2
    perturbation: Perturbation = Perturbation.REDRAW
    n_kernels: int = 8
    kernel_selection: KernelSelection = KernelSelection.RANDOM
    kernel_pool: int = 200
    initial_kernel: bool = False
    chunk_size: int = 8
    seed: int = 0
    scenario_perturbation: float = 0.1
    mip_gap: float = 1e-4
    time_limit: float = 60.0
    kernel_time_limit: float = 120.0
    mip_feasibility_tolerance: float = 1e-9

    def __post_init__(self) -> None:
        for name in ("n_samples", "scenarios_per_instance", "n_kernels", "chunk_size",
                     "kernel_pool"):  # fmt: skip
            if int(getattr(self, name)) < 1:
                raise VoltVarDataError(f"DataConfig.{name} must be >= 1")
        if not 0.0 <= self.radius <= 1.0:
            raise VoltVarDataError("DataConfig.radius must lie in [0, 1]")
        try:
            object.__setattr__(self, "perturbation", Perturbation(self.perturbation))
        except ValueError:
            raise VoltVarDataError(
                f"DataConfig.perturbation must be one of {[p.value for p in Perturbation]}, "
                f"got {self.perturbation!r}"
            ) from None
        try:
            object.__setattr__(self, "kernel_selection", KernelSelection(self.kernel_selection))
        except ValueError:
            raise VoltVarDataError(
                "DataConfig.kernel_selection must be one of "
                f"{[k.value for k in KernelSelection]}, got {self.kernel_selection!r}"
            ) from None

    def generation_key(self) -> dict:
        """Settings that fix the data (``n_samples`` excluded: more samples extend the data;
        the defaults ``REDRAW`` and ``RANDOM`` left out, so data generated before those
        options keep their key)."""
        d = asdict(self)
        d.pop("n_samples")
        mode = d.pop("perturbation")
        if mode is not Perturbation.REDRAW:
            d["perturbation"] = mode.value
        selection, pool = d.pop("kernel_selection"), d.pop("kernel_pool")
        if selection is not KernelSelection.RANDOM:
            d["kernel_selection"], d["kernel_pool"] = selection.value, pool
        if d["mip_feasibility_tolerance"] == LEGACY_MIP_FEASIBILITY_TOLERANCE:
            d.pop("mip_feasibility_tolerance")  # the data generated before the option
        return d

    def solver_options(self, time_limit: float, mip_gap: float | None = None) -> SolverOptions:
        """Options of a kernel or recourse MILP (one thread)."""
        return SolverOptions(
            mip_gap=self.mip_gap if mip_gap is None else mip_gap,
            time_limit=time_limit,
            threads=1,
            mip_feasibility_tolerance=self.mip_feasibility_tolerance,
        )


def problem_fingerprint(problem: VoltVarProblem) -> dict:
    """Feeder and settings a surrogate depends on (JSON-able, with a hash).

    The feeder enters through its nodes (names, tree, loads), PV, monitored and switchable
    buses, the first-stage rows and costs (a hash); not through the scenarios (the screening of
    line-limit rows depends on them, the surrogate does not).
    """
    cfg = problem.config
    math = problem.math
    fs = problem.first_stage
    a, lo, hi = fs.matrix()
    h = hashlib.sha256()
    for arr in (a.data, a.indices, lo, hi, fs.cost, math.parent, math.load_kw, math.load_kvar):
        h.update(np.ascontiguousarray(np.round(np.asarray(arr, dtype=float), 8)).tobytes())
    names = [
        list(math.node_names),
        list(problem.pv_buses),
        list(problem.monitored_buses),
        list(problem.switchable),
    ]
    h.update(json.dumps(names).encode())
    settings = {
        k: (v.value if hasattr(v, "value") else v)
        for k, v in asdict(cfg).items()
        if k not in ("tap_positions", "initial_switches")
    }
    settings["tap_positions"] = repr(cfg.tap_positions)
    settings["initial_switches"] = (
        None if cfg.initial_switches is None else dict(cfg.initial_switches)
    )
    return {
        "feeder": math.name,
        "n_nodes": int(math.n_nodes),
        "n_first_stage": int(problem.first_stage.size),
        "settings": json.loads(json.dumps(settings, default=str)),
        "model_hash": h.hexdigest()[:16],
    }


def feature_map(problem: VoltVarProblem) -> tuple[sp.csr_matrix, list[str]]:
    """The network input ``φ(x) = F x`` (in [0, 1]): tap positions and switchable states.

    ``φ`` holds ``k_{r,t} / (K_r − 1)`` (position index of regulator ``r`` in hour ``t``, linear
    in the tap binaries ``u``) and ``z_{s,t}`` of the switchable switches. Fixed switches and the
    auxiliary columns (counters, flows) are functions of these and get no input.

    Returns
    -------
    F : csr_matrix, shape (n_features, n_x)
    names : list of str
    """
    fs, grid, T = problem.first_stage, problem.grid, problem.n_periods
    n_x = fs.size
    rows, cols, vals, names = [], [], [], []
    names_fs = [v.name for v in fs.variables]
    r_reg = problem.math.regulators
    n_row = 0
    if "tap-u" in names_fs and r_reg.n_regulators:
        start = fs.slice("tap-u").start
        k = grid.size
        position = (np.arange(k) - grid.start[grid.regulator]).astype(float)
        scale = np.maximum(grid.count[grid.regulator] - 1, 1).astype(float)
        t_idx, c_idx = np.meshgrid(np.arange(T), np.arange(k), indexing="ij")  # (T, K)
        rows.append((t_idx * r_reg.n_regulators + grid.regulator[c_idx]).ravel())
        cols.append(start + (t_idx * k + c_idx).ravel())
        vals.append(np.tile(position / scale, T))
        names += [f"tap:{r_reg.names[r]}:h{t}" for t in range(T) for r in range(r_reg.n_regulators)]
        n_row = T * r_reg.n_regulators
    sw = problem.math.switches
    if "switch-z" in names_fs and sw is not None and problem.switchable:
        start = fs.slice("switch-z").start
        which = np.array([list(sw.names).index(n) for n in problem.switchable])
        t_idx, s_idx = np.meshgrid(np.arange(T), np.arange(len(which)), indexing="ij")
        rows.append(n_row + (t_idx * len(which) + s_idx).ravel())
        cols.append(start + (t_idx * sw.n_switches + which[s_idx]).ravel())
        vals.append(np.ones(t_idx.size))
        names += [f"switch:{problem.switchable[s]}:h{t}" for t in range(T)
                  for s in range(len(which))]  # fmt: skip
        n_row += T * len(which)
    if not rows:
        return sp.csr_matrix((0, n_x)), []
    f = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_row, n_x)
    )
    return f, names


def scenario_features(problem: VoltVarProblem, indices: np.ndarray) -> np.ndarray:
    """Pooled scenario features of an instance (eq 25): ``(N, T, 9)`` float32.

    Per node and hour: min, mean and max over the instance's scenarios of the load p and q
    (p.u.) and of the PV availability (p.u. on the node; zero at nodes without PV).
    """
    idx = np.asarray(indices, dtype=int).ravel()
    p, q = problem.net_load_pu(idx)  # (S, N, T)
    avail = problem.available_pv_kw(idx) / problem.math.s_base_kva  # (S, n_pv, T)
    pv = np.einsum("nk,skt->snt", problem._pv_node_map().toarray(), avail)
    stack = []
    for a in (p, q, pv):
        stack += [a.min(axis=0), a.mean(axis=0), a.max(axis=0)]
    return np.stack(stack, axis=-1).astype(np.float32)  # (N, T, 9)


def closed_adjacency(problem: VoltVarProblem) -> sp.csr_matrix:
    """``D^{-1/2} (A + I) D^{-1/2}`` of the all-switches-closed node graph (eq 27)."""
    math = problem.math
    n = math.n_nodes
    child = np.flatnonzero(~math.is_root)
    tail, head = math.parent[child], child
    sw = math.switches
    if sw is not None:
        tail = np.r_[tail, sw.tie_from_node]
        head = np.r_[head, sw.tie_to_node]
    a = sp.csr_matrix((np.ones(len(tail)), (tail, head)), shape=(n, n))
    a = ((a + a.T) > 0).astype(float) + sp.identity(n, format="csr")
    d = 1.0 / np.sqrt(np.asarray(a.sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(d) @ a @ sp.diags(d))


# ---------------------------------------------------------------------------- first stages
def _positions(problem: VoltVarProblem, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = problem.decode(x)
    sw = problem.math.switches
    which = [list(sw.names).index(n) for n in problem.switchable] if sw is not None else []
    return d.tap_positions.astype(float), d.switch_closed[which].astype(float)


def repair_first_stage(
    problem: VoltVarProblem,
    tap_target: np.ndarray,
    switch_target: np.ndarray,
    options: SolverOptions | None = None,
) -> np.ndarray:
    """Eq 36: the feasible first stage nearest (L1) to targets of positions and states.

    Parameters
    ----------
    tap_target : ndarray, shape (R, T)
        Target position indices (real numbers in ``[0, K − 1]``).
    switch_target : ndarray, shape (n_switchable, T)
        Target states in ``[0, 1]``.

    Returns
    -------
    ndarray, shape (n_x,)
        A complete first stage (auxiliary columns included).
    """
    model, blocks = problem.first_stage_model()
    for blk in blocks.values():
        model.set_cost(blk, np.zeros(blk.size))
    f, _ = feature_map(problem)
    grid, T = problem.grid, problem.n_periods
    scale = np.maximum(grid.count - 1, 1).astype(float)
    target = np.concatenate(
        [
            (np.asarray(tap_target, float) / scale[:, None]).T.ravel(),
            np.asarray(switch_target, float).T.ravel(),
        ]
    )
    weight = np.concatenate(
        [np.tile(scale, T), np.ones(np.asarray(switch_target).size)]
    )  # L1 in positions and states
    fs = problem.first_stage
    terms = [
        (blocks[v.name], f[:, fs.slice(v.name)]) for v in fs.variables if f[:, fs.slice(v.name)].nnz
    ]
    n = f.shape[0]
    dev = model.add_variables("repair-deviation", n, lb=0.0, cost=weight)
    eye = sp.identity(n, format="csr")
    model.add_constraints("repair-above", [*terms, (dev, eye)], lb=target)  # φ + d ≥ φ̃
    model.add_constraints("repair-below", [*[(b, -m) for b, m in terms], (dev, eye)], lb=-target)
    sol = model.solve(options or SolverOptions(mip_gap=1e-6, time_limit=60.0, threads=1))
    x = np.concatenate([sol.value(blocks[v.name]) for v in fs.variables])
    x[fs.integer] = np.round(x[fs.integer])
    return x


def perturbed_targets(
    problem: VoltVarProblem,
    kernel: np.ndarray,
    radius: float,
    rng: np.random.Generator,
    mode: Perturbation = Perturbation.REDRAW,
) -> tuple[np.ndarray, np.ndarray]:
    """Kernel positions/states perturbed by ``mode`` (module docstring)."""
    taps, sws = _positions(problem, kernel)
    k_max = (problem.grid.count - 1).astype(float)[:, None]
    if mode is Perturbation.STEPS:
        n_reg, T = taps.shape
        hours = np.arange(T)[None, :]
        move = rng.random(n_reg) < radius
        step = np.where(rng.random(n_reg) < 0.5, -1.0, 1.0) * move
        taps = np.clip(taps + step[:, None] * (hours >= rng.integers(T, size=n_reg)[:, None]),
                       0.0, k_max)  # fmt: skip
        n_sw = sws.shape[0]
        lo = rng.integers(T, size=n_sw)
        hi = np.where(rng.random(n_sw) < 0.5, T, lo + 1 + rng.integers(T, size=n_sw))
        window = (
            (hours >= lo[:, None]) & (hours < hi[:, None]) & (rng.random(n_sw) < radius)[:, None]
        )
        return taps, np.where(window, 1.0 - sws, sws)
    redraw = rng.random(taps.shape) < radius
    taps = np.where(redraw, rng.random(taps.shape) * k_max, taps)
    redraw = rng.random(sws.shape) < radius
    sws = np.where(redraw, rng.random(sws.shape), sws)
    return taps, sws


def neutral_first_stage(problem: VoltVarProblem) -> np.ndarray:
    """Middle tap position all day, switches in their normal states (repaired by eq 36)."""
    grid, T = problem.grid, problem.n_periods
    taps = np.repeat(((grid.count - 1) / 2.0)[:, None], T, axis=1)
    sw = problem.math.switches
    which = [list(sw.names).index(n) for n in problem.switchable] if sw is not None else []
    states = (
        np.repeat(sw.normal_closed[which].astype(float)[:, None], T, axis=1)
        if sw is not None
        else np.zeros((0, T))
    )
    return repair_first_stage(problem, taps, states)


def initial_first_stage(problem: VoltVarProblem) -> np.ndarray:
    """Initial taps held all day (clipped to the allowed range), normal switch states."""
    grid, T = problem.grid, problem.n_periods
    k0 = getattr(problem, "_initial_position", None)  # the problem's initial positions
    k0 = (grid.count - 1) / 2.0 if k0 is None else np.clip(k0, 0, grid.count - 1)
    sw = problem.math.switches
    which = [list(sw.names).index(n) for n in problem.switchable] if sw is not None else []
    states = (
        np.repeat(sw.normal_closed[which].astype(float)[:, None], T, axis=1)
        if sw is not None
        else np.zeros((0, T))
    )
    return repair_first_stage(problem, np.repeat(np.asarray(k0, float)[:, None], T, 1), states)


def merge_data(*parts: VoltVarData) -> VoltVarData:
    """Samples of several data directories of the same problem (in order)."""
    fps = {json.dumps(p.meta["problem"], sort_keys=True) for p in parts}
    if len(fps) != 1:
        raise VoltVarDataError("data of different feeders or settings cannot be merged")
    cat = lambda k: np.concatenate([getattr(p, k) for p in parts])  # noqa: E731
    h = hashlib.sha256("".join(p.meta["hash"] for p in parts).encode()).hexdigest()[:16]
    meta = {**parts[0].meta, "hash": h, "parts": [p.meta for p in parts]}
    return VoltVarData(
        x=cat("x"), features=cat("features"), scenarios=cat("scenarios"),
        recourse=cat("recourse"), target=cat("target"), encoder_input=cat("encoder_input"),
        seconds=cat("seconds"), meta=meta,
        kernels=np.unique(np.vstack([p.kernels for p in parts if p.kernels.size]), axis=0)
        if any(p.kernels.size for p in parts) else parts[0].kernels,
    )  # fmt: skip


def deterministic_vvo(
    problem: VoltVarProblem,
    scenario: int | list[int],
    config: DataConfig,
    *,
    start: np.ndarray | None = None,
) -> np.ndarray:
    """Kernel solution: the 2S-VVO on one scenario (first stage + one recourse copy, a MILP),
    or on a list of scenarios (equal probabilities; ``NESTED`` kernels).

    HiGHS starts from ``start`` (default :func:`neutral_first_stage`); at the time limit the
    incumbent is taken (the start itself when HiGHS has none).
    """
    from gridrecourse.errors import SolverTimeLimitError
    from gridrecourse.problems.base import add_second_stage_blocks

    fs = problem.first_stage
    which = np.atleast_1d(np.asarray(scenario, dtype=int))
    model, blocks = problem.first_stage_model()
    add_second_stage_blocks(
        model,
        problem.second_stage,
        np.full(len(which), 1.0 / len(which)),
        data=problem.scenario_data(which),
        first_stage=blocks,
        first_stage_spec=fs,
    )
    start = neutral_first_stage(problem) if start is None else np.asarray(start, dtype=float)
    model.set_start({blocks[v.name]: start[fs.slice(v.name)] for v in fs.variables})
    options = config.solver_options(config.kernel_time_limit, max(config.mip_gap, 1e-3))
    try:
        sol = model.solve(options)
    except (SolverTimeLimitError, InfeasibleModelError):
        return start
    x = np.concatenate([sol.value(blocks[v.name]) for v in fs.variables])
    x[fs.integer] = np.round(x[fs.integer])
    return x


# ---------------------------------------------------------------------------- recourse tasks
def _recourse_state(problem: VoltVarProblem):
    return problem.build_second_stage()


def _solve_task(model, item: tuple[np.ndarray, int], *, options: SolverOptions) -> float:
    """``Q(x, ξ)``: inf when infeasible, NaN when unresolved (the MILP reached its time limit
    without a feasible point: no label; training skips the sample)."""
    x, scenario = item
    r = model.solve(x, int(scenario), options, farkas=False, unresolved=True)
    if r.feasible:
        return float(r.objective)
    return float("nan") if is_unresolved(r.feasible, r.dual_bound) else float("inf")


def _recourse_values(
    executor: Executor,
    problem: VoltVarProblem,
    items: list[tuple[np.ndarray, int]],
    options: SolverOptions,
) -> np.ndarray:
    """``Q(x, ξ_s)`` of every ``(x, s)`` item through ``executor`` (:func:`_solve_task`)."""
    task = functools.partial(_solve_task, options=options)
    state = functools.partial(_recourse_state, problem)
    return np.array(executor.map(task, items, state_factory=state, desc=None))


# ---------------------------------------------------------------------------- the data set
@dataclass(frozen=True, eq=False)
class VoltVarData:
    """Generated samples.

    Attributes
    ----------
    x : ndarray, shape (n, n_x)
        First stages.
    features : ndarray, shape (n, n_features)
        ``φ(x)`` (network input).
    scenarios : ndarray of int, shape (n, m)
        Scenario numbers of every instance (chunk ``c``'s problem holds numbers
        ``c · chunk_size · m …`` as its indices 0, 1, …).
    recourse : ndarray, shape (n, m)
        ``Q(x, ξ_ω)`` ($; inf when infeasible, NaN when unresolved at the time limit).
    target : ndarray, shape (n,)
        Mean recourse ($; inf when any scenario is infeasible, NaN when one is unresolved).
    encoder_input : ndarray, shape (n, N, T, 9), float32
    seconds : ndarray, shape (n_chunks,)
        Wall time of every chunk.
    meta : dict
    kernels : ndarray, shape (k, n_x)
        The kernel first stages the samples were perturbed from (``kernels.npz``).
    """

    x: np.ndarray
    features: np.ndarray
    scenarios: np.ndarray
    recourse: np.ndarray
    target: np.ndarray
    encoder_input: np.ndarray
    seconds: np.ndarray
    meta: dict
    kernels: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @property
    def feasible(self) -> np.ndarray:
        """Samples whose every scenario is feasible."""
        return np.isfinite(self.target)

    @property
    def infeasible(self) -> np.ndarray:
        """Samples with a scenario whose recourse is infeasible (inf)."""
        return infeasible_samples(self.recourse)

    @property
    def unresolved(self) -> np.ndarray:
        """Samples with a scenario whose recourse MILP is unresolved (NaN, no label)."""
        return unresolved_samples(self.recourse)


def infeasible_samples(recourse: np.ndarray) -> np.ndarray:
    """Rows of ``recourse`` (samples × scenarios) with an infeasible scenario (inf)."""
    return np.isinf(recourse).any(axis=1)


def unresolved_samples(recourse: np.ndarray) -> np.ndarray:
    """Rows of ``recourse`` (samples × scenarios) with an unresolved scenario (NaN)."""
    return np.isnan(recourse).any(axis=1)


def _atomic_savez(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def instance_problem(problem: VoltVarProblem, config: DataConfig, key: int, n: int):
    """The problem over ``n`` scenarios drawn from the stream ``(config.seed, key)``.

    Chunk ``c`` uses ``key = c`` (its ``chunk_size · m`` scenarios, instance by instance);
    the kernels use ``key = −1``. Independent of ``n_samples`` and of what ran before.
    """
    cfg = problem.config
    seed = int(np.random.SeedSequence([config.seed, key + 1]).generate_state(1)[0])
    scen = voltvar_scenarios(
        problem.scenarios.site_names,
        n,
        n_periods=cfg.n_periods,
        start_hour=cfg.start_hour,
        perturbation=config.scenario_perturbation,
        seed=seed,
    )
    return VoltVarProblem(problem.math, scen, cfg)


def _kernels(
    problem: VoltVarProblem,
    config: DataConfig,
    path: Path,
    say: Callable[[str], None],
    executor: Executor,
) -> np.ndarray:
    """Kernel first stages (cached in ``kernels.npz``)."""
    if path.exists():
        return np.load(path)["x"]
    if config.kernel_selection is not KernelSelection.RANDOM:
        out = list(_pool_kernels(problem, config, path.with_name("kernels_partial.npz"),
                                     say, executor))  # fmt: skip
    else:
        kp = instance_problem(problem, config, -1, config.n_kernels)
        out = []
        for k in range(config.n_kernels):
            t0 = time.perf_counter()
            out.append(deterministic_vvo(kp, k, config))
            say(f"kernel {k + 1}/{config.n_kernels} in {time.perf_counter() - t0:.1f} s")
    if config.initial_kernel:
        out.append(initial_first_stage(problem))
    x = np.unique(np.vstack(out), axis=0)  # a time-limited kernel may repeat the start
    _atomic_savez(path, x=x)
    return x


def _pool_kernels(
    problem: VoltVarProblem,
    config: DataConfig,
    partial: Path,
    say: Callable[[str], None],
    executor: Executor,
) -> np.ndarray:
    """``COVERING`` or ``NESTED`` kernels over a pool of ``kernel_pool`` scenarios ``ξ_1 … ξ_P``.

    Kernel 1 is the deterministic VVO on ``ξ_1``. ``COVERING``: kernel ``k + 1`` is the
    deterministic VVO on the unused pool scenario with the largest
    ``min_{j ≤ k} cᵀx_j + Q(x_j, ξ)`` (infinite where no kernel so far is feasible, or its
    recourse unresolved), so that the kernels include the switch configurations the hard
    scenarios need. ``NESTED``: kernel ``k + 1`` is the VVO on the scenarios of kernel ``k``
    and the unused pool scenario with the largest ``cᵀx_k + Q(x_k, ξ)``, started from
    ``x_k``. Each kernel but the last is evaluated on the whole pool through ``executor``.
    Progress (kernels, their scenarios and pool costs) is kept in ``partial`` after every
    step, so an interruption loses at most one kernel solve or evaluation.
    """
    nested = config.kernel_selection is KernelSelection.NESTED
    kp = instance_problem(problem, config, -1, config.kernel_pool)
    n = min(config.n_kernels, config.kernel_pool)
    options = config.solver_options(config.time_limit)
    if partial.exists():
        z = np.load(partial)
        xs, cost, used = list(z["x"]), list(z["cost"]), [int(s) for s in z["scenario"]]
    else:
        xs, cost, used = [], [], []
    while True:
        if len(cost) < len(xs) and len(xs) < n:
            t0 = time.perf_counter()
            items = [(xs[-1], s) for s in range(config.kernel_pool)]
            q = _recourse_values(executor, kp, items, options)
            cost.append(np.where(np.isnan(q), np.inf, q) + float(kp.first_stage.cost @ xs[-1]))
            unserved = int(np.isinf(np.min(cost, axis=0)).sum())
            say(
                f"kernel {len(xs)} evaluated on the {config.kernel_pool} pool scenarios in "
                f"{time.perf_counter() - t0:.1f} s; {unserved} served by no kernel yet"
            )
        elif len(xs) < n:
            if used:
                served = np.array(cost[-1]) if nested else np.min(cost, axis=0)
                served[used] = -np.inf
                s = int(np.argmax(served))
            else:
                s = 0
            t0 = time.perf_counter()
            on = [*used, s] if nested else [s]
            xs.append(deterministic_vvo(kp, on, config, start=xs[-1] if nested and xs else None))
            used.append(s)
            say(f"kernel {len(xs)}/{n} on pool scenario{'s' * (len(on) > 1)} "
                f"{', '.join(map(str, on))} in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        else:
            return np.vstack(xs)
        _atomic_savez(partial, x=np.vstack(xs),
                      cost=np.vstack(cost) if cost else np.zeros((0, config.kernel_pool)),
                      scenario=np.array(used, dtype=int))  # fmt: skip


def generate_data(
    problem: VoltVarProblem,
    config: DataConfig,
    directory: str | Path,
    *,
    executor: Executor | None = None,
    log: Callable[[str], None] | None = None,
    stop_after_chunks: int | None = None,
) -> VoltVarData:
    """Generate (or resume) the data set in ``directory`` (module docstring).

    Parameters
    ----------
    problem : VoltVarProblem
        Feeder and settings (its own scenarios are not used; the pool is drawn from
        ``config.seed``).
    config : DataConfig
    directory : path
    executor : Executor, optional
        Runs the recourse MILPs (default in-process). Not closed.
    log : callable, optional
        Progress lines (default: stderr), with samples per minute.
    stop_after_chunks : int, optional
        Stop after this many *new* chunks (an interruption, for tests).

    Returns
    -------
    VoltVarData
        Every finished chunk.
    """
    say = log or (lambda s: print(s, file=sys.stderr, flush=True))
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    meta = {"problem": problem_fingerprint(problem), "data": config.generation_key()}
    meta_path = root / "meta.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if {k: old.get(k) for k in meta} != json.loads(json.dumps(meta)):
            raise VoltVarDataError(
                f"{root} holds data of other settings (feeder {old['problem']['feeder']}, "
                f"{old['data']}); use another directory"
            )
    _atomic_json(meta_path, meta)
    m, size = config.scenarios_per_instance, config.chunk_size
    n_chunks = -(-config.n_samples // size)
    options = config.solver_options(config.time_limit)
    ex = executor or InProcessExecutor()
    kernels = _kernels(problem, config, root / "kernels.npz", say, ex)
    done_new, t_start, n_new = 0, time.perf_counter(), 0
    f, _ = feature_map(problem)
    for c in range(n_chunks):
        path = root / f"chunk_{c:05d}.npz"
        if path.exists():
            continue
        if stop_after_chunks is not None and done_new >= stop_after_chunks:
            break
        t0 = time.perf_counter()
        rng = np.random.default_rng([config.seed, c])
        samples = np.arange(c * size, min((c + 1) * size, config.n_samples))
        pool = instance_problem(problem, config, c, len(samples) * m)
        xs = []
        for _ in samples:
            kernel = kernels[rng.integers(len(kernels))]
            taps, sws = perturbed_targets(pool, kernel, config.radius, rng, config.perturbation)
            try:
                xs.append(repair_first_stage(pool, taps, sws))
            except InfeasibleModelError:  # pragma: no cover - the kernel itself is feasible
                xs.append(kernel)
        scen = np.arange(len(samples))[:, None] * m + np.arange(m)[None, :]
        items = [(xs[i], int(s)) for i in range(len(samples)) for s in scen[i]]
        q = _recourse_values(ex, pool, items, options).reshape(len(samples), m)
        x = np.vstack(xs)
        enc = np.stack([scenario_features(pool, s) for s in scen])
        sec = time.perf_counter() - t0
        _atomic_savez(
            path, x=x, features=(f @ x.T).T, scenarios=scen + c * size * m, recourse=q,
            target=q.mean(axis=1), encoder_input=enc, seconds=np.array([sec]),
        )  # fmt: skip
        done_new += 1
        n_new += len(samples)
        rate = 60.0 * n_new / (time.perf_counter() - t_start)
        say(
            f"chunk {c + 1}/{n_chunks}: {len(samples)} samples in {sec:.1f} s "
            f"({rate:.2f} samples/min, {int(infeasible_samples(q).sum())} infeasible, "
            f"{int(unresolved_samples(q).sum())} unresolved)"
        )
    return load_data(root)


def load_data(directory: str | Path) -> VoltVarData:
    """Read every finished chunk of a data directory (in chunk order)."""
    root = Path(directory)
    meta_path = root / "meta.json"
    if not meta_path.exists():
        raise VoltVarDataError(f"{root} is no data directory (no meta.json)")
    meta = json.loads(meta_path.read_text())
    files = sorted(root.glob("chunk_[0-9][0-9][0-9][0-9][0-9].npz"))
    if not files:
        raise VoltVarDataError(f"{root} has no finished chunk")
    parts = [np.load(p) for p in files]

    def cat(key: str) -> np.ndarray:
        return np.concatenate([p[key] for p in parts])

    h = hashlib.sha256()
    for key in ("x", "scenarios", "recourse"):
        h.update(np.ascontiguousarray(cat(key)).tobytes())
    meta = {**meta, "hash": h.hexdigest()[:16]}
    return VoltVarData(
        x=cat("x"),
        features=cat("features"),
        scenarios=cat("scenarios"),
        recourse=cat("recourse"),
        target=cat("target"),
        encoder_input=cat("encoder_input"),
        seconds=cat("seconds"),
        meta=meta,
        kernels=np.load(root / "kernels.npz")["x"] if (root / "kernels.npz").exists()
        else np.zeros((0, cat("x").shape[1])),
    )  # fmt: skip
