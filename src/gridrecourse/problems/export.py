"""Export a two-stage problem in mpi-sppy's MPS-reader format (one MPS file per scenario).

mpi-sppy's ``mpisppy.problem_io.mps_module`` reads, for every scenario ``scen<k>``, the pair

* ``scen<k>.mps`` — the scenario's deterministic model: the first stage ``x`` with its rows,
  bounds and integrality, and the scenario's recourse ``y_ω`` with ``L_ω ≤ W y_ω + S_ω T x ≤
  U_ω``; objective ``cᵀx + d_ωᵀy_ω`` (+ the recourse's constant offset, written as a fixed
  column because the reader drops objective constants);
* ``scen<k>_nonants.json`` — ``{"scenarioData": {"name", "scenProb"}, "treeData":
  {"globalNodeCount": 1, "nodes": {"ROOT": {"serialNumber": 0, "condProb": 1.0,
  "nonAnts": [first-stage column names]}}}}``.

The first-stage columns have the same names in every file (``<block>_<k>``), so mpi-sppy's EF
``min Σ_ω π_ω (cᵀx + Q_ω)`` with shared nonants is exactly our extensive form
(:mod:`gridrecourse.methods.extensive_form`, METHODS §2), and its PH runs on our instances.
Quadratic recourse (P2 losses) is refused: the reader takes MILPs/LPs only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gridrecourse.errors import GridRecourseError
from gridrecourse.problems.base import TwoStageProblem, add_second_stage_blocks
from gridrecourse.solvers.highs import LinearModel, VariableBlock
from gridrecourse.solvers.mps import column_names, write_mps

__all__ = ["ExportError", "ExportedInstance", "export_mps_instance", "scenario_model"]


class ExportError(GridRecourseError, ValueError):
    """The problem cannot be exported (quadratic recourse, bad scenario selection)."""


@dataclass(frozen=True)
class ExportedInstance:
    """What :func:`export_mps_instance` wrote.

    Attributes
    ----------
    directory : Path
    scenario_names : tuple of str
        ``scen0`` … in file order.
    scenario_indices : ndarray of int
        The problem's scenario of each file.
    probabilities : ndarray
        ``scenProb`` of each file (renormalized over the exported scenarios).
    nonants : tuple of str
        First-stage column names (the ``ROOT`` node's ``nonAnts``).
    """

    directory: Path
    scenario_names: tuple[str, ...]
    scenario_indices: np.ndarray
    probabilities: np.ndarray
    nonants: tuple[str, ...]


def scenario_model(
    problem: TwoStageProblem, scenario: int
) -> tuple[LinearModel, dict[str, VariableBlock]]:
    """The deterministic model of one scenario: first stage plus its recourse (weight 1).

    Raises
    ------
    ExportError
        Quadratic recourse.
    """
    spec = problem.second_stage
    if spec.has_quadratic:
        raise ExportError(
            f"{problem.name}: quadratic recourse cannot be exported to MPS for mpi-sppy's "
            "reader (MILP/LP only); use a linear objective"
        )
    fs = problem.first_stage
    model = LinearModel(f"{problem.name}-scen{scenario}")
    first = {
        v.name: model.add_variables(
            f"x-{v.name}", v.size, lb=v.lb, ub=v.ub, cost=v.cost, integer=v.integer
        )
        for v in fs.variables
    }
    for c in fs.constraints:
        model.add_constraints(f"x-{c.name}", [(first[n], m) for n, m in c.terms], lb=c.lb, ub=c.ub)
    add_second_stage_blocks(
        model,
        spec,
        np.ones(1),
        data=problem.scenario_data(np.array([int(scenario)])),
        first_stage=first,
        first_stage_spec=fs,
    )
    model.offset = float(spec.objective_offset)
    return model, first


def export_mps_instance(
    problem: TwoStageProblem,
    directory: str | Path,
    *,
    scenarios: Sequence[int] | np.ndarray | None = None,
    prefix: str = "scen",
) -> ExportedInstance:
    """Write ``<prefix><k>.mps`` and ``<prefix><k>_nonants.json`` for every scenario.

    Parameters
    ----------
    problem : TwoStageProblem
    directory : str or Path
        Created if missing.
    scenarios : sequence of int, optional
        Scenario indices (default all); probabilities renormalized.
    prefix : str
        Scenario name base (mpi-sppy needs names ending in a serial number from 0).

    Returns
    -------
    ExportedInstance
    """
    n_all = problem.n_scenarios
    idx = np.arange(n_all) if scenarios is None else np.asarray(scenarios, dtype=int).ravel()
    if idx.size == 0 or idx.min() < 0 or idx.max() >= n_all or len(set(idx)) != len(idx):
        raise ExportError(f"scenarios must be distinct indices within 0..{n_all - 1}")
    prob = np.asarray(problem.probability, dtype=float)[idx]
    prob = prob / prob.sum()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    nonants: list[str] = []
    for k, (scenario, p) in enumerate(zip(idx, prob, strict=True)):
        model, first = scenario_model(problem, int(scenario))
        cols = column_names(model)
        nonants = [cols[i] for block in first.values() for i in block.indices]
        name = f"{prefix}{k}"
        write_mps(model, out / f"{name}.mps", name=name, names=cols)
        tree = {
            "scenarioData": {"name": name, "scenProb": float(p), "scenarioIndex": int(scenario)},
            "treeData": {
                "globalNodeCount": 1,
                "nodes": {
                    "ROOT": {
                        "serialNumber": 0,
                        "condProb": 1.0,
                        "nonAnts": nonants,
                    }
                },
            },
        }
        (out / f"{name}_nonants.json").write_text(json.dumps(tree, indent=1))
        names.append(name)
    return ExportedInstance(
        directory=out,
        scenario_names=tuple(names),
        scenario_indices=idx,
        probabilities=prob,
        nonants=tuple(nonants),
    )
