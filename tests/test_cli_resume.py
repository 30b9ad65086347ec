"""``--resume`` inside a method (SPAR and PH iterations, bounds replications, the blocks of
SPAR's exact evaluations); Ctrl-C in a MIP.

A siting run is interrupted by SIGINT in the middle of SPAR's (PH's) iterations, after their
first checkpoint; ``--resume`` says on stderr which iteration it resumed at, and the result, the
decision and the iteration history equal those of an uninterrupted run with the same options
(reference: that run, in its own folder).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

EXE = [sys.executable, "-c", "from gridrecourse.cli import main; raise SystemExit(main())"]
#: Wall-time columns of the history tables (differ between any two runs).
TIMES = {"first_stage_seconds", "second_stage_seconds", "update_seconds", "wall_seconds"}
#: Summary keys that describe the run, not its result.
RUN_KEYS = {"wall_seconds", "run_folder", "reused_checkpoints", "resumed_at_iteration"}
RUN_KEYS |= {"seconds_per_iteration", "bounds_reused_replications", "evaluation_reused_scenarios"}


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([*EXE, *argv], capture_output=True, text=True, timeout=600)


def _interrupt_when(argv: list[str], ready, timeout: float = 300.0):
    """Start the CLI, send SIGINT once ``ready()`` holds; the finished process."""
    proc = subprocess.Popen(
        [*EXE, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"finished before the interrupt point: {proc.communicate()[1][-2000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail("interrupt point never reached")
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def _result(folder: Path) -> dict:
    return json.loads((folder / "result.json").read_text())


def _history(folder: Path) -> pd.DataFrame:
    table = pd.read_csv(folder / "history.csv")
    return table.drop(columns=[c for c in table.columns if c in TIMES])


def _check_resume(argv: list[str], tmp_path: Path, checkpoint: str, label: str) -> str:
    """Reference run, interrupted run, resumed run; the resumed equals the reference."""
    ref = tmp_path / "ref"
    done = _run([*argv, "--out", str(ref)])
    assert done.returncode == 0, done.stderr

    cut = tmp_path / "cut"
    state = cut / "checkpoints" / f"{checkpoint}.pkl"
    code, _, err = _interrupt_when([*argv, "--out", str(cut)], state.exists)
    assert code == 130, err
    assert json.loads((cut / "status.json").read_text())["status"] == "interrupted"
    assert not (cut / "checkpoints" / "solve.pkl").exists()  # stopped inside the method

    resumed = _run([*argv, "--resume", str(cut)])
    assert resumed.returncode == 0, resumed.stderr
    match = re.search(rf"resumed {label} at iteration (\d+) of (\d+)", resumed.stderr)
    assert match, resumed.stderr
    a, b = _result(cut), _result(ref)
    assert a["resumed_at_iteration"] == int(match.group(1)) >= 10
    assert any(r.startswith(f"resumed {label} at iteration") for r in a["reused_checkpoints"])
    assert b["resumed_at_iteration"] == 0
    assert set(a) == set(b)
    for key in sorted(set(a) - RUN_KEYS):
        assert a[key] == b[key], key  # exact: same floats, same decision
    pd.testing.assert_frame_equal(_history(cut), _history(ref))
    assert (cut / "decision.csv").read_text() == (ref / "decision.csv").read_text()
    return resumed.stderr


@pytest.mark.slow
def test_siting_spar_sigint_mid_iterations_then_resume(tmp_path):
    argv = [
        "siting",
        "case33bw",
        "--scenarios",
        "24",
        "--max-iterations",
        "80",
        "--polish-rounds",
        "1",
        "--no-certificate",
    ]
    _check_resume(argv, tmp_path, "spar-iterations", "SPAR")


@pytest.mark.slow
def test_siting_ph_sigint_mid_iterations_then_resume(tmp_path):
    argv = ["siting", "case33bw", "--scenarios", "24", "--method", "ph", "--rho", "0.01"]
    argv += ["--max-iterations", "12", "--no-certificate"]
    _check_resume(argv, tmp_path, "ph-iterations", "PH")


@pytest.mark.slow
def test_siting_spar_sigint_mid_evaluation_then_resume(tmp_path):
    """SIGINT once the first block of SPAR's exact evaluations is checkpointed (240 scenarios,
    about 3 s of evaluations after 1 s of learning): the resumed run reuses the saved blocks,
    solves the rest, and its result equals the uninterrupted run's."""
    argv = ["siting", "case33bw", "--scenarios", "240", "--max-iterations", "10"]
    argv += ["--polish-rounds", "2", "--no-certificate"]
    ref = tmp_path / "ref"
    done = _run([*argv, "--out", str(ref)])
    assert done.returncode == 0, done.stderr

    cut = tmp_path / "cut"
    state = cut / "checkpoints" / "spar-evaluations.pkl"
    code, _, err = _interrupt_when([*argv, "--out", str(cut)], state.exists)
    assert code == 130, err
    assert not (cut / "checkpoints" / "solve.pkl").exists()  # stopped inside the evaluations

    resumed = _run([*argv, "--resume", str(cut)])
    assert resumed.returncode == 0, resumed.stderr
    match = re.search(r"exact evaluations: (\d+) scenario solves reused", resumed.stderr)
    assert match, resumed.stderr
    a, b = _result(cut), _result(ref)
    assert a["evaluation_reused_scenarios"] == int(match.group(1)) >= 1
    assert b["evaluation_reused_scenarios"] == 0
    assert any(r.startswith("spar-evaluations: ") for r in a["reused_checkpoints"])
    assert set(a) == set(b)
    for key in sorted(set(a) - RUN_KEYS):
        assert a[key] == b[key], key  # exact: same floats, same decision
    pd.testing.assert_frame_equal(_history(cut), _history(ref))
    assert (cut / "decision.csv").read_text() == (ref / "decision.csv").read_text()
    assert (cut / "scenario_objectives.csv").read_text() == (
        ref / "scenario_objectives.csv"
    ).read_text()


@pytest.mark.slow
def test_siting_bounds_sigint_mid_replications_then_resume(tmp_path):
    """SIGINT once the first bounds replication is checkpointed: the resumed run reuses the
    SPAR solve and the finished replications, and its bounds equal the uninterrupted run's."""
    argv = ["siting", "case33bw", "--scenarios", "24", "--max-iterations", "15"]
    argv += ["--polish-rounds", "1", "--no-certificate", "--bounds", "--replications", "3"]
    argv += ["--batch-size", "12"]
    ref = tmp_path / "ref"
    done = _run([*argv, "--out", str(ref)])
    assert done.returncode == 0, done.stderr

    cut = tmp_path / "cut"
    state = cut / "checkpoints" / "bounds-replications.pkl"
    code, _, err = _interrupt_when([*argv, "--out", str(cut)], state.exists)
    assert code == 130, err
    assert not (cut / "checkpoints" / "bounds.pkl").exists()  # stopped inside the bounds

    resumed = _run([*argv, "--resume", str(cut)])
    assert resumed.returncode == 0, resumed.stderr
    match = re.search(r"bounds: reused (\d+) of 6 finished replication tasks", resumed.stderr)
    assert match, resumed.stderr
    a, b = _result(cut), _result(ref)
    assert a["bounds_reused_replications"] == int(match.group(1)) >= 1
    assert a["reused_checkpoints"][0] == "solve"
    for key in ("lb_ci", "ub_ci", "bounds_gap", "objective", "units_per_bus"):
        assert a[key] == b[key], key


@pytest.mark.slow
def test_sigint_inside_a_long_mip_ends_within_seconds(tmp_path):
    """The EF of 240 scenarios runs for tens of seconds (its root LP alone); SIGINT 2 s into
    the HiGHS solve ends the command within a few seconds, exit 130, status interrupted."""
    out = tmp_path / "ef"
    argv = ["siting", "case33bw", "--method", "ef", "--scenarios", "240", "--mip-gap", "0"]
    argv += ["--time-limit", "3000", "--no-certificate", "--json", "--out", str(out)]
    log = out / "solver.log"
    started: list[float] = []

    def two_seconds_into_the_solve() -> bool:
        if not started and log.exists() and "Presolving" in log.read_text():
            started.append(time.monotonic())
        return bool(started) and time.monotonic() - started[0] >= 2.0

    t0 = time.monotonic()
    code, out_text, err = _interrupt_when(argv, two_seconds_into_the_solve)
    waited = time.monotonic() - started[0] - 2.0
    assert code == 130, err
    assert waited < 5.0, f"exit {waited:.1f} s after SIGINT"
    assert json.loads(out_text)["kind"] == "interrupted"
    assert json.loads((out / "status.json").read_text())["status"] == "interrupted"
    assert "Traceback" not in err and time.monotonic() - t0 < 120
