"""The Python API, the README example, and the shared CLI helpers (units, progress, logs)."""

from __future__ import annotations

import inspect
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gridrecourse as gr
from gridrecourse import cli, cli_siting
from gridrecourse.cli_common import Bound, Progress, format_seconds
from gridrecourse.network.loading import DEFAULT_FEEDER, builtin_names
from gridrecourse.problems.siting import PVSitingProblem, TapSetting
from gridrecourse.report.html import fmt_number, key_value_table, markdown_to_html
from gridrecourse.report.run_folder import RunFolder, tidy_table

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_python() -> str:
    text = README.read_text()
    section = text[text.index("## Python API") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs(capsys):
    exec(compile(_readme_python(), "README.md", "exec"), {})
    out = capsys.readouterr().out
    objective, kw, violations = re.match(
        r"([0-9.]+) p\.u\., ([0-9]+) kW PV, ([0-9]+) AC voltage violations", out
    ).groups()
    assert float(objective) > 0 and 0 < float(kw) <= 1500 and int(violations) >= 0


def test_api_names_resolve_and_unknown_name_fails():
    for name in gr.__all__:
        assert getattr(gr, name) is not None, name
    with pytest.raises(AttributeError, match="no_such_name"):
        gr.no_such_name  # noqa: B018


def test_api_defaults_equal_the_cli():
    taps = inspect.signature(PVSitingProblem.from_feeder).parameters["taps"].default
    assert taps is TapSetting.NEUTRAL and taps.value == cli_siting.DEFAULT_TAPS
    assert set(cli_siting.TAP_CHOICES) == {t.value for t in TapSetting}
    assert cli.DEFAULT_FEEDER == DEFAULT_FEEDER
    assert {"ieee_european_lv", "case33bw"} <= set(builtin_names())
    assert cli_siting.OBJECTIVES == {"p1": "voltage_deviation", "p2": "losses"}


def test_evaluate_matches_exact_evaluation():
    problem = gr.PVSitingProblem.from_feeder("case33bw", 24, seed=1)
    units = np.zeros(len(problem.candidates), dtype=int)
    units[:3] = 5
    decision = gr.SitingDecision(
        site_names=tuple(problem.candidates), units=units, sited=units > 0, unit_kw=10.0
    )
    report = gr.evaluate(problem, decision)
    exact = gr.evaluate_first_stage(problem, decision, desc=None)
    assert report.objective == pytest.approx(exact.expected_objective)
    assert report.certificate is None


# ------------------------------------------------------------------- shared helpers
def test_bound_rejects_nan_inf_and_out_of_range():
    b = Bound(0.0, 1.0)
    assert b.contains(0.0) and b.contains(1.0)
    assert not b.contains(math.nan) and not b.contains(math.inf) and not b.contains(-1e-9)
    assert Bound(0.0, low_open=True).describe() == "> 0"
    assert not Bound(0.0, low_open=True).contains(0.0)
    assert Bound(0.0, 1.0, high_open=True).describe() == "in [0, 1)"


def test_progress_eta(capsys, monkeypatch):
    now = [0.0]
    monkeypatch.setattr("gridrecourse.cli_common.time.perf_counter", lambda: now[0])
    p = Progress(2, interval=0.0)
    p("phase")
    now[0] = 10.0
    p.tick(1, 4, "items")  # 10 s for 1 of 4: 30 s to go
    err = capsys.readouterr().err
    assert "[1/2] phase (0.0 s)" in err
    assert "items 1/4 (25 %), 10 s elapsed, ETA 30 s" in err
    assert format_seconds(125) == "2 min 05 s" and format_seconds(3720) == "1 h 02 min"


def test_numbers_are_rounded_with_units():
    assert fmt_number(2.527681234567) == "2.528"
    assert fmt_number(1500.0) == "1500"
    assert fmt_number(0.000123456) == "1.235e-04"
    assert fmt_number(float("nan")) == "n/a"
    table = key_value_table({"wall_seconds": 12.3456, "total_pv_kw": 1500.0, "v_min_pu": 0.95})
    assert "| wall seconds | 12.35 | s |" in table
    assert "| total pv kw | 1500 | kW |" in table
    assert "| v min pu | 0.9500 | p.u. |" in table


def test_markdown_to_html_tables_lists_images(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    fig.savefig(tmp_path / "p.png")
    plt.close(fig)
    md = "# T <x>\n\n- a\n- b\n\n| q | v |\n|---|---|\n| x | 1 |\n\n![plot](p.png)\n"
    html = markdown_to_html(md, tmp_path)
    assert "<h1>T &lt;x&gt;</h1>" in html
    assert "<li>a</li>" in html and "<td>1</td>" in html
    assert 'src="data:image/png;base64,' in html


def test_tidy_table_moves_arrays_to_long_form(tmp_path):
    frame = pd.DataFrame({"iteration": [1, 2], "units": [np.array([3, 0]), np.array([1, 2])]})
    flat, long = tidy_table(frame)
    assert list(flat.columns) == ["iteration"]
    assert long["units"]["units"].tolist() == [3, 0, 1, 2]
    folder = RunFolder(tmp_path / "r", "test")
    folder.write_table("history", frame)
    assert "[" not in (tmp_path / "r" / "history.csv").read_text()
    assert (tmp_path / "r" / "history_units.csv").read_text().startswith("row,position,units")


def test_highs_log_goes_to_file_not_stdout(tmp_path, capfd):
    from gridrecourse.solvers.highs import LinearModel, solver_log_file

    log = tmp_path / "solver.log"
    with solver_log_file(log):
        model = LinearModel("tiny")
        x = model.add_variables("x", 2, lb=0, ub=4, cost=[-1.0, -2.0], integer=True)
        model.add_constraints("cap", [(x, np.array([[1.0, 1.0]]))], ub=5)
        solution = model.solve()
    assert solution.objective == pytest.approx(-9.0)
    assert "Running HiGHS" in log.read_text()
    assert capfd.readouterr().out == ""
