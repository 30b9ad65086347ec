"""``gridrecourse voltvar`` on the tiny voltvar5 feeder: JSON keys, run folder, methods, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridrecourse.cli import main

FEEDER = str(Path(__file__).resolve().parent / "data" / "voltvar5" / "Master.dss")
#: the instance of tests/problems/test_volt_var.py (enumerated optimum 600 $ with 3 scenarios)
TINY = [
    FEEDER,
    "--scenarios", "3",
    "--seed", "1",
    "--hours", "2",
    "--start-hour", "18",
    "--pv-buses", "b4",
    "--pv-kva", "500",
    "--monitor", "fm",
    "--max-tap-changes", "2",
    "--initial-taps", "0.95",
    "--max-violation-hours", "1",
    "--max-consecutive-violations", "1",
    "--mip-gap", "1e-9",
]  # fmt: skip
KEYS = {
    "method", "objective", "gap_pct", "wall_seconds", "n_scenarios", "taps", "switch_states",
    "ac_min_voltage_pu", "ac_max_voltage_pu", "ac_voltage_violations", "ac_max_model_error_pu",
}  # fmt: skip


def _run(capfd, argv: list[str]) -> tuple[int, dict]:
    code = main(["voltvar", *argv, "--json"])
    out = capfd.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, f"stdout must be one JSON object, got {out!r}"
    return code, json.loads(lines[0])


@pytest.mark.slow
def test_ef_and_ph_json_and_run_folder(capfd, tmp_path):
    code, ef = _run(capfd, [*TINY, "--method", "ef", "--out", str(tmp_path / "ef")])
    assert code == 0
    assert KEYS <= set(ef)
    assert ef["method"] == "ef" and ef["n_scenarios"] == 3
    assert ef["objective"] == pytest.approx(600.0, abs=1e-6)  # the enumerated optimum
    assert ef["gap_pct"] == pytest.approx(0.0, abs=1e-6)
    assert ef["taps"]["creg1"][1] == 0  # 1.0 p.u. in the last hour in every optimum
    assert set(ef["switch_states"]) == {"s24", "t34"}
    assert ef["ac_voltage_violations"] >= 0 and 0.8 < ef["ac_min_voltage_pu"] < 1.1
    assert ef["ac_max_model_error_pu"] < 0.05
    folder = tmp_path / "ef"
    for name in ("tap_schedule", "switch_schedule", "voltage_envelopes", "curtailment"):
        assert (folder / f"{name}.csv").exists()
    assert json.loads((folder / "result.json").read_text())["objective"] == ef["objective"]
    code, ph = _run(
        capfd,
        [*TINY, "--method", "ph", "--ef-objective", str(ef["objective"]), "--no-ac",
         "--executor", "process", "--workers", "2", "--out", str(tmp_path / "ph")],
    )  # fmt: skip
    assert code == 0 and ph["method"] == "ph"
    assert ph["gap_pct"] == pytest.approx(0.0, abs=1e-6)
    assert ph["resumed_at_iteration"] == 0
    assert (tmp_path / "ph" / "checkpoints" / "ph-iterations.pkl").exists()  # every iteration
    assert "ac_min_voltage_pu" not in ph
    # sa, too, with the scenario recourse MILPs in two worker processes
    code, sa = _run(
        capfd,
        [*TINY, "--method", "sa", "--no-ac", "--executor", "process", "--workers", "2",
         "--out", str(tmp_path / "sa")],
    )  # fmt: skip
    assert code == 0 and sa["method"] == "sa" and sa["status"] == "optimal"
    assert sa["objective"] == pytest.approx(600.0, abs=1e-6)  # the enumerated optimum
    assert sa["ef_bound"] <= 600.0 + 1e-6 and sa["gap_pct"] == pytest.approx(0.0, abs=1e-6)
    assert 1 <= sa["sa_rounds"] <= 3 and len(sa["sa_scenarios"]) == sa["sa_rounds"]
    assert sa["sa_kernels"] == []
    # with scenario kernels: every scenario added after the first round had its own master
    code, sk = _run(capfd, [*TINY, "--method", "sa", "--sa-kernels", "--no-ac",
                            "--out", str(tmp_path / "sk")])  # fmt: skip
    assert code == 0 and sk["status"] == "optimal"
    assert sk["objective"] == pytest.approx(600.0, abs=1e-6)
    assert set(sk["sa_scenarios"][1:]) <= set(sk["sa_kernels"])


def test_monitored_bus_error_is_one_json_object(capfd, tmp_path):
    code, err = _run(capfd, [*TINY[:1], "--hours", "2", "--pv-buses", "b4", "--monitor", "lm",
                             "--out", str(tmp_path / "x")])  # fmt: skip
    assert code == 1
    assert err["error"] == "VoltVarConfigError" and "'85'" in err["message"]


def test_interrupt_after_the_solve_then_resume_reuses_it(capfd, tmp_path, monkeypatch):
    """Ctrl-C in the exact evaluation: the folder says interrupted and holds the solve only;
    ``--resume`` reuses the solve, evaluates, and gives the uninterrupted run's result."""
    import gridrecourse.cli_voltvar as module

    argv = [*TINY, "--method", "ef", "--no-ac"]
    code, ref = _run(capfd, [*argv, "--out", str(tmp_path / "ref")])
    assert code == 0 and ref["reused_checkpoints"] == []
    real = module.evaluate_with_values

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    cut = tmp_path / "cut"
    monkeypatch.setattr(module, "evaluate_with_values", stop)
    assert main(["voltvar", *argv, "--json", "--out", str(cut)]) == 130
    error = json.loads(capfd.readouterr().out)
    assert error["kind"] == "interrupted" and f"--resume {cut}" in error["message"]
    assert json.loads((cut / "status.json").read_text())["status"] == "interrupted"
    assert (cut / "checkpoints" / "solve.pkl").exists() and not (cut / "result.json").exists()
    assert main(["voltvar", *argv, "--json", "--out", str(cut)]) == 1  # a used --out is refused
    assert "already holds a run" in json.loads(capfd.readouterr().out)["message"]

    monkeypatch.setattr(module, "evaluate_with_values", real)
    code, res = _run(capfd, [*argv, "--resume", str(cut)])
    assert code == 0 and res["reused_checkpoints"] == ["solve"]
    for key in ("objective", "taps", "switch_states", "first_stage_cost"):
        assert res[key] == ref[key], key
    assert json.loads((cut / "status.json").read_text())["status"] == "done"


def test_long_phases_report_progress_on_stderr_and_json_stays_clean(capfd, tmp_path):
    """PH: a tick line per iteration's subproblems and a line per iteration; the exact
    evaluation ticks its scenarios; SA notes its rounds. Under ``--json`` stderr carries none
    of them and stdout one JSON object."""
    argv = [*TINY, "--no-ac", "--max-iterations", "1"]
    assert main(["voltvar", *argv, "--method", "ph", "--out", str(tmp_path / "ph")]) == 0
    err = capfd.readouterr().err
    assert "PH iteration 0: subproblems 3/3 (100 %)" in err
    assert "PH iteration 0: metric" in err
    assert "scenarios 3/3 (100 %)" in err
    assert main(["voltvar", *argv, "--method", "sa", "--out", str(tmp_path / "sa")]) == 0
    assert "round 1: 1 scenarios, master" in capfd.readouterr().err
    assert main(["voltvar", *argv, "--method", "ph", "--json", "--out", str(tmp_path / "q")]) == 0
    quiet = capfd.readouterr()
    assert json.loads(quiet.out)["method"] == "ph" and len(quiet.out.strip().splitlines()) == 1
    assert "PH iteration" not in quiet.err and "scenarios 3/3" not in quiet.err
