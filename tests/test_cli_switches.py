"""``gridrecourse opf --reconfigure``: switch states per hour, graph and OpenDSS checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gridrecourse.cli import main

MESHED9 = Path(__file__).resolve().parent / "data" / "meshed9" / "Master.dss"


def test_opf_reconfigure_json(tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["opf", str(MESHED9), "--reconfigure", "--max-switch-ops", "2", "--json"]
    assert main([*argv, "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "Optimal"
    states = summary["switch_states"]
    assert set(states) == {"s23", "s45", "s67", "t37", "t58"}
    z = np.array([states[k] for k in ("s23", "s45", "s67", "t37", "t58")])
    assert z.shape == (5, 24) and set(np.unique(z)) <= {0, 1}
    # operations from the normal states, at most 2 per switch
    normal = np.array([1, 1, 1, 0, 0])
    ops = np.abs(np.diff(np.column_stack([normal, z]), axis=1)).sum(axis=1)
    assert ops.max() <= 2 and ops.sum() == summary["n_switch_operations"]
    # every configuration used: radial, all fed, and OpenDSS AC agrees (loss-corrected)
    assert summary["switch_check_radial"] and summary["switch_check_energized"]
    assert 0 <= summary["switch_ac_max_abs_voltage_error_pu"] <= 0.010
    used = {tuple(z[:, t]) for t in range(24)}
    assert len(summary["switch_configurations"]) == len(used)
    assert summary["milp_binaries"] == 5 * 24
    assert json.loads((out / "result.json").read_text())["switch_states"] == states


def test_opf_reconfigure_feeds_a_bus_behind_a_normally_open_switch(tmp_path, capsys):
    """b9's only supply is the normally-open T99: the normal-state OPF cannot feed it, the
    reconfiguration closes T99 in every hour."""
    master = tmp_path / "behind_open.dss"
    master.write_text(
        f'Redirect "{MESHED9}"\n'
        "New Line.T99 phases=3 bus1=b5.1.2.3 bus2=b9.1.2.3 switch=yes\n"
        "Open Line.T99 term=1\n"
        "New Load.b9 bus1=b9.1.2.3 phases=3 conn=wye kv=12.47 kw=10 kvar=5 model=1\n"
    )
    assert main(["opf", str(master), "--json", "--out", str(tmp_path / "n")]) == 1
    err = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert err["error"] == "IslandedBusError"
    argv = ["opf", str(master), "--reconfigure", "--json", "--out", str(tmp_path / "r")]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["switch_states"]["t99"] == [1] * 24
    assert summary["switch_check_energized"] and summary["switch_check_radial"]
    assert summary["switch_ac_max_abs_voltage_error_pu"] <= 0.010
