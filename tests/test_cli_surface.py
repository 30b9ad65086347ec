"""The product surface of the CLI: JSON on every command, run folders that survive, options.

Everything runs on the built-in ``case33bw`` (no feeder folder needed) at a small size.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from gridrecourse.cli import main

#: The installed entry point, independent of PATH.
EXE = [sys.executable, "-c", "from gridrecourse.cli import main; raise SystemExit(main())"]
#: A small siting run: SPAR, few iterations, bounds with 2 replications, no AC certificate.
SITING = [
    "siting",
    "case33bw",
    "--scenarios",
    "24",
    "--max-iterations",
    "15",
    "--polish-rounds",
    "1",
]
#: A small expand run (E2E, 2 warm-up + 2 end-to-end epochs).
EXPAND = [
    "expand",
    "case33bw",
    "--epochs",
    "4",
    "--warmup-epochs",
    "2",
    "--hidden-size",
    "8",
    "--horizon",
    "12",
    "--history",
    "12",
    "--stride",
    "96",
]


def _json_tool(stdout: str) -> dict:
    """``... --json | python -m json.tool``: passes, and the object it parsed."""
    tool = subprocess.run(
        [sys.executable, "-m", "json.tool"], input=stdout, capture_output=True, text=True
    )
    assert tool.returncode == 0, f"json.tool failed on stdout: {stdout[:500]!r}"
    return json.loads(stdout)


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*EXE, *argv], capture_output=True, text=True, **kwargs)


# ------------------------------------------------------------------------- --json
@pytest.mark.parametrize(
    "argv",
    [
        ["info", "case33bw", "--json"],
        ["opf", "case33bw", "--json", "--day", "10"],
        ["validate", "case33bw", "--json"],
    ],
    ids=["info", "opf", "validate"],
)
def test_json_tool_on_success(argv, tmp_path):
    if argv[0] != "info":
        argv = [*argv, "--out", str(tmp_path / "run")]
    done = _run(argv)
    assert done.returncode == 0, done.stderr
    summary = _json_tool(done.stdout)
    assert "error" not in summary
    if argv[0] != "info":
        assert (tmp_path / "run" / "result.json").is_file()
        assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "done"


@pytest.mark.parametrize(
    "argv",
    [
        ["info", "no-such-feeder", "--json"],
        ["validate", "no-such-feeder", "--json"],
        ["opf", "case33bw", "--pv-penetration", "nan", "--json"],
        ["siting", "case33bw", "--mip-gap", "-1", "--json"],
        ["expand", "case33bw", "--lambda", "2", "--json"],
        ["voltvar", "no-such-feeder", "--json"],
        ["operate", "no-such-feeder", "--json"],
        ["siting", "--no-such-option", "--json"],
    ],
    ids=["info", "validate", "opf", "siting", "expand", "voltvar", "operate", "usage"],
)
def test_json_tool_on_error(argv, tmp_path):
    done = _run(argv, cwd=tmp_path)
    assert done.returncode != 0
    error = _json_tool(done.stdout)
    assert {"error", "kind", "message"} <= error.keys()
    assert error["kind"] in {"input", "usage", "solver"}
    assert "Traceback" not in done.stderr


#: The siting run behind the JSON/report test and the interrupt test's reference.
SITING_BOUNDS = [*SITING, "--bounds", "--replications", "2", "--batch-size", "12", "--json"]


@pytest.fixture(scope="module")
def siting_reference(tmp_path_factory) -> tuple[Path, dict, str]:
    """One uninterrupted small siting run (SPAR + bounds + AC certificate)."""
    out = tmp_path_factory.mktemp("siting") / "ref"
    done = _run([*SITING_BOUNDS, "--out", str(out)])
    assert done.returncode == 0, done.stderr
    return out, json.loads(done.stdout), done.stdout


def test_siting_json_pipeline_success_and_report(siting_reference):
    """The main job's shape: one JSON object; report.html, tidy CSVs, decision table right."""
    out, _, stdout = siting_reference
    summary = _json_tool(stdout)
    assert summary["lb_ci"][0] <= summary["lb_ci"][1]
    # paired gap of the decision: every G_k >= 0 when the LB samples are valid bounds
    assert 0.0 <= summary["bounds_gap_mrp"] < float("inf")
    assert summary["bounds_gap_mrp_pct"] == pytest.approx(
        100 * summary["bounds_gap_mrp"] / summary["objective"], rel=1e-12
    )
    assert set(summary["lb_sources"]) <= {"extensive_form", "lagrangian", "l_shaped"}
    assert summary["bounds_sampling"] == "stratified"  # the default design
    assert 0 <= summary["bounds_take_all"] <= 12 // 2
    assert summary["ac_voltage_violations"] >= 0
    assert (out / "solver.log").is_file()  # the bounds' batch EFs (MIPs) log there
    assert "Running HiGHS" in (out / "solver.log").read_text()
    decision = pd.read_csv(out / "decision.csv")
    assert (decision["sited"] == (decision["units"] > 0)).all()
    assert decision["units"].sum() * 10 == pytest.approx(summary["total_pv_kw"])
    for csv in out.glob("*.csv"):
        text = csv.read_text()
        assert "[" not in text and "array(" not in text, csv.name  # no numpy reprs
    assert (out / "decision.parquet").is_file()
    _check_html(out / "report.html", summary)


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []
        self.cells: list[str] = []
        self._in_td = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs).get("src", ""))
        self._in_td = tag == "td"

    def handle_endtag(self, tag):
        if tag == "td":
            self._in_td = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_td:
            self.cells.append(data.strip())


def _check_html(path: Path, summary: dict) -> None:
    parser = _Collect()
    parser.feed(path.read_text())
    text = " ".join(parser.text)
    assert parser.tags.count("table") >= 4  # result, bounds, decision, AC certificate
    assert parser.images and all(src.startswith("data:image/png;base64,") for src in parser.images)
    for needle in ("Statistical bounds", "AC certificate", "Provenance", "highspy", "p.u."):
        assert needle in text, needle
    # numbers are rounded for reading: no 16-digit floats in table cells
    assert not any(
        len(c.replace(".", "").lstrip("-")) > 12 and c[:1].isdigit() for c in parser.cells
    )
    # the decision table lists exactly the sited buses
    sited = summary["units_per_bus"]
    assert f"{len(sited)} sited buses" in text


# ---------------------------------------------------------------------- bad options
@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["siting", "case33bw", "--mip-gap", "-1"], "--mip-gap -1.0: expected a number in [0, 1]"),
        (["siting", "case33bw", "--method", "ef", "--time-limit", "-5"], "--time-limit -5.0"),
        (["siting", "case33bw", "--mip-feasibility-tolerance", "0"], "tolerance 0.0: expected"),
        (["siting", "case33bw", "--scenarios", "25"], "multiple of 24"),
        (["siting", "case33bw", "--scenarios", "0"], "--scenarios 0"),
        (["siting", "case33bw", "--method", "ef", "--rho", "1"], "--rho applies to --method ph"),
        (["siting", "case33bw", "--method", "ph", "--bounds"], "--bounds applies to --method spar"),
        (["siting", "case33bw", "--method", "spar", "--time-limit", "5"], "--time-limit applies"),
        (["siting", "case33bw", "--budget", "nan"], "--budget nan"),
        (["siting", "case33bw", "--budget", "-1"], "--budget -1.0: expected a number > 0"),
        (["siting", "case33bw", "--max-sites", "0"], "--max-sites 0"),
        (["siting", "case33bw", "--min-sites", "5", "--max-sites", "2"], "--min-sites 5"),
        (["siting", "case33bw", "--replications", "1"], "--replications 1"),
        (["siting", "case33bw", "--batch-sampling", "iid"], "apply only with --bounds"),
        (["siting", "case33bw", "--rho-growth", "0.5", "--method", "ph"], "--rho-growth 0.5"),
        (["siting", "case33bw", "--load-data", "/no/such.csv"], "--load-data /no/such.csv"),
        (["opf", "case33bw", "--pv-penetration", "nan"], "--pv-penetration nan"),
        (["opf", "case33bw", "--time-limit", "-5"], "--time-limit -5.0"),
        (["opf", "case33bw", "--day", "400"], "--day 400: expected a number in [0, 364]"),
        (["opf", "case33bw", "--switch-cost", "5"], "applies only with --reconfigure"),
        (["opf", "case33bw", "--max-tap-changes", "2"], "applies only with --taps optimize"),
        (["expand", "case33bw", "--method", "eto", "--rho", "1"], "--rho applies to --method ph"),
        (["expand", "case33bw", "--lambda", "2"], "--lambda"),
    ],
)
def test_bad_option_is_named_before_any_work(argv, fragment, tmp_path, capsys):
    out = tmp_path / "run"
    t0 = time.perf_counter()
    assert main([*argv, "--json", "--out", str(out)]) == 1
    error = json.loads(capsys.readouterr().out)
    assert error["kind"] == "input"
    assert fragment in error["message"], error["message"]
    assert time.perf_counter() - t0 < 10  # no compute happened
    assert not (out / "result.json").exists()


def test_option_given_at_its_default_still_counts(capsys):
    """``--rho 1.0`` (PH's default) with ``--method spar`` is an error, not silently ignored."""
    assert main(["siting", "case33bw", "--rho", "1.0", "--json"]) == 1
    assert "--rho applies to --method ph" in json.loads(capsys.readouterr().out)["message"]


def test_version_and_fast_help():
    done = _run(["--version"])
    assert done.returncode == 0 and done.stdout.startswith("gridrecourse ")
    code = (
        "import sys\nfrom gridrecourse.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('numpy', 'pandas', 'highspy', 'torch') if m in sys.modules]\n"
        "print('HEAVY:' + ','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "HEAVY:", "--help imported heavy modules"


# ------------------------------------------------------------------------ --out cases
def test_out_that_is_a_file_fails_before_compute(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main([*SITING, "--json", "--out", str(target)]) == 1
    error = json.loads(capsys.readouterr().out)
    assert "--out" in error["message"] and "not a folder" in error["message"]
    assert main([*SITING, "--json", "--out", str(target / "sub")]) == 1
    assert "is a file" in json.loads(capsys.readouterr().out)["message"]


def test_out_holding_a_run_is_refused_then_overwrite_and_resume(tmp_path, capsys):
    out = tmp_path / "v"
    assert main(["validate", "case33bw", "--json", "--out", str(out)]) == 0
    first = json.loads(capsys.readouterr().out)
    # rerun into the used folder: refused, nothing of the old run touched
    stamp = (out / "result.json").stat().st_mtime_ns
    assert main(["validate", "case33bw", "--json", "--out", str(out)]) == 1
    error = json.loads(capsys.readouterr().out)
    assert "already holds a run (status done)" in error["message"]
    assert "--resume" in error["message"] and "--overwrite" in error["message"]
    assert (out / "result.json").stat().st_mtime_ns == stamp
    # --overwrite replaces it
    (out / "stray.txt").write_text("old run's file")
    assert main(["validate", "case33bw", "--json", "--out", str(out), "--overwrite"]) == 0
    assert not (out / "stray.txt").exists()
    second = json.loads(capsys.readouterr().out)
    assert second["max_abs_voltage_error_pu"] == first["max_abs_voltage_error_pu"]
    # --resume with other settings is refused, naming the setting
    assert main(["validate", "ieee_european_lv", "--json", "--resume", str(out)]) == 1
    assert "feeder" in json.loads(capsys.readouterr().out)["message"]
    # --resume of a folder with no run
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["validate", "case33bw", "--json", "--resume", str(empty)]) == 1
    assert "no run folder there" in json.loads(capsys.readouterr().out)["message"]
    # --resume and a different --out
    argv = ["validate", "case33bw", "--json", "--resume", str(out), "--out", str(empty)]
    assert main(argv) == 1
    assert "give one folder" in json.loads(capsys.readouterr().out)["message"]


def test_folder_with_other_files_is_refused(tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["validate", "case33bw", "--json", "--out", str(out)]) == 1
    assert "already holds files" in json.loads(capsys.readouterr().out)["message"]
    assert (out / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------------ interrupts
def _interrupt_when(argv: list[str], ready, timeout: float = 300.0, sig=signal.SIGINT):
    """Start the CLI, send ``sig`` once ``ready()`` holds; the finished process."""
    # a test runner started in the background inherits SIGINT ignored: restore the default
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
            out, err = proc.communicate()
            pytest.fail(f"finished before the interrupt point: {err[-2000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail("interrupt point never reached")
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def _assert_interrupted(code: int, out: str, err: str, folder: Path, expected: int = 130):
    assert code == expected, err
    assert "Traceback" not in err
    tail = [line for line in err.strip().splitlines() if line.startswith("interrupted")]
    assert len(tail) == 1 and f"--resume {folder}" in tail[0]
    error = _json_tool(out)
    assert error["kind"] == "interrupted" and error["exit_code"] == expected
    status = json.loads((folder / "status.json").read_text())
    assert status["status"] == "interrupted"
    assert not (folder / "result.json").exists()  # nothing looks complete


def test_siting_sigint_then_resume_equals_uninterrupted(siting_reference, tmp_path):
    argv = SITING_BOUNDS
    ref = siting_reference[1]

    out = tmp_path / "cut"
    solve = out / "checkpoints" / "solve.pkl"
    code, stdout, stderr = _interrupt_when([*argv, "--out", str(out)], solve.exists)
    _assert_interrupted(code, stdout, stderr, out)
    assert solve.exists() and not (out / "checkpoints" / "bounds.pkl").exists()

    resumed = _run([*argv, "--resume", str(out)])
    assert resumed.returncode == 0, resumed.stderr
    res = json.loads(resumed.stdout)
    # the solve, and the bounds replications that finished before the interrupt (if any)
    assert res["reused_checkpoints"][0] == "solve"
    assert all(r.startswith("bounds: reused") for r in res["reused_checkpoints"][1:])
    keys = ("objective", "units_per_bus", "total_pv_kw", "lb_ci", "ub_ci", "iterations")
    for key in (*keys, "ac_min_voltage_pu", "ac_voltage_violations"):
        assert res[key] == ref[key], key
    assert json.loads((out / "status.json").read_text())["status"] == "done"


def test_siting_sigterm_exit_143(tmp_path):
    out = tmp_path / "term"
    argv = [*SITING, "--json", "--out", str(out)]
    code, stdout, stderr = _interrupt_when(
        argv, lambda: (out / "status.json").exists(), sig=signal.SIGTERM
    )
    _assert_interrupted(code, stdout, stderr, out, expected=143)


def test_expand_sigint_then_resume_equals_uninterrupted(tmp_path):
    argv = [*EXPAND, "--json", "--quiet"]
    reference = _run([*argv, "--out", str(tmp_path / "ref")])
    assert reference.returncode == 0, reference.stderr
    ref = json.loads(reference.stdout)

    out = tmp_path / "cut"

    def mid_training() -> bool:  # an end-to-end epoch checkpointed, training not finished
        return (
            any((out / "checkpoints").rglob("e2e.pt")) if (out / "checkpoints").exists() else False
        )

    code, stdout, stderr = _interrupt_when([*argv, "--out", str(out)], mid_training)
    _assert_interrupted(code, stdout, stderr, out)

    resumed = _run([*argv, "--resume", str(out)])
    assert resumed.returncode == 0, resumed.stderr
    res = json.loads(resumed.stdout)
    for key in ("task_loss", "prediction_mse", "realized_cost", "capacity_kwh_total"):
        assert res[key] == pytest.approx(ref[key], rel=1e-9), key


def test_expand_refuses_used_out(tmp_path, capsys):
    out = tmp_path / "e"
    out.mkdir()
    (out / "config.json").write_text("{}")
    assert main([*EXPAND, "--json", "--out", str(out)]) == 1
    assert "already holds a run" in json.loads(capsys.readouterr().out)["message"]


def test_env_keeps_working_directory_clean(tmp_path):
    """No ``--out``: the default folder is under ./runs, nothing else is written."""
    done = _run(["validate", "case33bw", "--json"], cwd=tmp_path, env={**os.environ})
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert Path(summary["run_folder"]).parts[0] == "runs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


# ------------------------------------------------------------------ bring-your-own data
def _series_csv(path: Path, values, column: str) -> Path:
    stamps = pd.date_range("2024-01-01", periods=len(values), freq="1h")
    pd.DataFrame({"timestamp": stamps, column: values}).to_csv(path, index=False)
    return path


def test_opf_uses_price_and_load_data(tmp_path, capsys):
    import numpy as np

    hours = np.arange(48)
    price = _series_csv(tmp_path / "price.csv", np.where(hours % 24 < 12, -5.0, 80.0), "eur")
    load = _series_csv(tmp_path / "load.csv", 50 + 50 * (hours % 24) / 23, "kw")
    out = tmp_path / "o"
    argv = ["opf", "case33bw", "--day", "1", "--price-data", str(price), "--load-data", str(load)]
    assert main([*argv, "--json", "--out", str(out)]) == 0
    json.loads(capsys.readouterr().out)
    hourly = pd.read_csv(out / "hourly.csv")
    assert hourly["price_per_mwh"].tolist() == [-5.0] * 12 + [80.0] * 12
    assert hourly["load_multiplier"].iloc[-1] == pytest.approx(1.0)
    assert hourly["load_multiplier"].iloc[0] == pytest.approx(0.5)
    # a day beyond the data is named
    assert main([*argv[:2], "--day", "5", "--price-data", str(price), "--json"]) == 1
    assert "--price-data" in json.loads(capsys.readouterr().out)["message"]


def test_siting_load_data_changes_the_scenarios(tmp_path, capsys):
    import numpy as np

    flat = _series_csv(tmp_path / "flat.csv", np.full(24 * 3, 2.0), "kw")
    out = tmp_path / "s"
    base = ["siting", "case33bw", "--scenarios", "24", "--method", "ef"]
    argv = [*base, "--load-data", str(flat), "--no-certificate", "--json"]
    assert main([*argv, "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_scenarios"] == 24 and summary["objective"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["load_data"] == str(flat)
