"""MPS export in mpi-sppy's format: files read back with highspy stack to our extensive form."""

from __future__ import annotations

import json
from pathlib import Path

import highspy
import numpy as np
import pytest
import scipy.sparse as sp

from gridrecourse.methods.extensive_form import solve_extensive_form
from gridrecourse.problems.export import ExportError, export_mps_instance
from gridrecourse.solvers.options import SolverOptions

EXACT = SolverOptions(mip_gap=1e-9)


def _read(path: Path):
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    assert h.readModel(str(path)) == highspy.HighsStatus.kOk
    lp = h.getLp()
    a = sp.csc_matrix(
        (
            np.asarray(lp.a_matrix_.value_),
            np.asarray(lp.a_matrix_.index_),
            np.asarray(lp.a_matrix_.start_),
        ),
        shape=(lp.num_row_, lp.num_col_),
    )
    integer = (
        np.array([int(t) == int(highspy.HighsVarType.kInteger) for t in lp.integrality_])
        if len(lp.integrality_)
        else np.zeros(lp.num_col_, dtype=bool)
    )
    return (
        list(lp.col_names_),
        a,
        np.asarray(lp.col_cost_),
        np.asarray(lp.col_lower_),
        np.asarray(lp.col_upper_),
        np.asarray(lp.row_lower_),
        np.asarray(lp.row_upper_),
        integer,
        float(lp.offset_),
    )


def stacked_ef_objective(directory: Path) -> float:
    """mpi-sppy's EF of the exported files: nonants shared by name, costs weighted by scenProb."""
    files = sorted(directory.glob("*.mps"))
    shared: dict[str, int] = {}
    cols_cost, cols_lb, cols_ub, cols_int = [], [], [], []
    blocks, row_lb, row_ub = [], [], []
    offset = 0.0
    n_cols = 0
    for f in files:
        tree = json.loads(f.with_name(f.stem + "_nonants.json").read_text())
        p = tree["scenarioData"]["scenProb"]
        nonants = set(tree["treeData"]["nodes"]["ROOT"]["nonAnts"])
        names, a, cost, lb, ub, rlb, rub, integer, off = _read(f)
        offset += p * off
        position = np.empty(len(names), dtype=int)
        for j, name in enumerate(names):
            if name in nonants and name in shared:
                position[j] = shared[name]
                cols_cost[shared[name]] += p * cost[j]
                continue
            position[j] = n_cols
            if name in nonants:
                shared[name] = n_cols
            cols_cost.append(p * cost[j])
            cols_lb.append(lb[j])
            cols_ub.append(ub[j])
            cols_int.append(integer[j])
            n_cols += 1
        blocks.append((a.tocoo(), position))
        row_lb.append(rlb)
        row_ub.append(rub)
    rows, cols, vals, r0 = [], [], [], 0
    for coo, position in blocks:
        rows.append(coo.row + r0)
        cols.append(position[coo.col])
        vals.append(coo.data)
        r0 += coo.shape[0]
    a = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(r0, n_cols)
    )
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n_cols, r0
    lp.col_cost_ = np.array(cols_cost)
    lp.col_lower_, lp.col_upper_ = np.array(cols_lb), np.array(cols_ub)
    lp.row_lower_, lp.row_upper_ = np.concatenate(row_lb), np.concatenate(row_ub)
    lp.offset_ = offset
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = a.indptr, a.indices, a.data
    lp.integrality_ = [
        highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous for i in cols_int
    ]
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 1e-9)
    h.passModel(lp)
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    return float(h.getInfo().objective_function_value)


@pytest.mark.slow
def test_ieee13_siting_round_trip(tmp_path: Path) -> None:
    from gridrecourse.problems.siting import PVSitingProblem, SitingConfig

    problem = PVSitingProblem.from_feeder("ieee13", 24, SitingConfig(), seed=0)
    chosen = np.arange(7, 17)  # 10 daytime scenarios (stratified sets come in 24 hours)
    out = export_mps_instance(problem, tmp_path, scenarios=chosen)
    assert len(list(tmp_path.glob("scen*.mps"))) == 10
    assert len(list(tmp_path.glob("scen*_nonants.json"))) == 10
    assert np.isclose(out.probabilities.sum(), 1.0)
    tree = json.loads((tmp_path / "scen0_nonants.json").read_text())
    assert tree["scenarioData"]["scenProb"] == pytest.approx(out.probabilities[0])
    assert tree["treeData"]["nodes"]["ROOT"]["nonAnts"] == list(out.nonants)
    ours = solve_extensive_form(problem, EXACT, scenarios=chosen).objective
    theirs = stacked_ef_objective(tmp_path)
    assert abs(theirs - ours) <= 1e-6 * max(1.0, abs(ours)), (theirs, ours)


def test_tiny_round_trip_and_format(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from siting_cases import tiny_problem

    problem = tiny_problem()
    export_mps_instance(problem, tmp_path)
    text = (tmp_path / "scen0.mps").read_text()
    assert "RANGES" not in text and "'INTORG'" in text
    ours = solve_extensive_form(problem, EXACT).objective
    assert stacked_ef_objective(tmp_path) == pytest.approx(ours, rel=1e-6, abs=1e-9)


def test_quadratic_recourse_is_refused(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from gridrecourse.problems.siting import SitingObjective
    from siting_cases import tiny_problem

    with pytest.raises(ExportError, match="quadratic"):
        export_mps_instance(tiny_problem(SitingObjective.LOSSES), tmp_path)
