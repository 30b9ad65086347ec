"""OpenDSS import: element counts of the IEEE feeders and clear errors on bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from dss_fixtures import ISLANDED, MESHED, RADIAL, write_master

from gridrecourse.errors import (
    FeederInputError,
    IslandedBusError,
    MeshedNetworkError,
    UnknownFeederError,
)
from gridrecourse.network.io_opendss import feeder_from_opendss
from gridrecourse.network.loading import resolve_feeder_spec
from gridrecourse.network.math_model import build_math_feeder
from gridrecourse.network.reduce import fold_split_phase_secondaries


@pytest.mark.shared
@pytest.mark.parametrize(
    ("master", "buses", "nodes", "lines_incl_switches", "switches", "transformers", "loads"),
    [
        # Figures from ../shared/feeders/README.md (OpenDSS's own counts).
        ("ieee13/IEEE13Nodeckt.dss", 16, 41, 12, 1, 5, 15),
        ("ieee123/IEEE123Master.dss", 132, 278, 126, 8, 8, 91),
        ("ieee8500/Master.dss", 4876, 8531, 3703, 43, 1190, 1177),
        ("ieee9500/Master-unbal-initial-config.dss", 5302, 9549, 4022, 110, 1305, 2550),
    ],
)
def test_import_counts_match_opendss(
    feeder_dir, master, buses, nodes, lines_incl_switches, switches, transformers, loads
):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        feeder = feeder_from_opendss(feeder_dir / master)
    assert feeder.n_buses == buses
    assert feeder.n_nodes == nodes
    # Series reactors are imported as lines named reactor_*; they are not OpenDSS Lines.
    n_lines = sum(not ln.name.startswith("reactor_") for ln in feeder.lines)
    assert n_lines + len(feeder.switches) == lines_incl_switches
    assert len(feeder.switches) >= switches - 1  # a switch may be disabled (counted as open)
    assert len(feeder.transformers) == transformers
    assert len(feeder.loads) == loads


@pytest.mark.shared
def test_ieee13_line_impedance_and_taps(feeder_dir):
    feeder = feeder_from_opendss(feeder_dir / "ieee13/IEEE13Nodeckt.dss")
    line = next(ln for ln in feeder.lines if ln.name == "650632")
    # linecode mtx601, 2000 ft: R_aa = 0.3465 ohm/mile -> 0.13125 ohm (IEEE 13 data sheet)
    assert line.z_ohm.shape == (3, 3)
    assert line.z_ohm[0, 0].real == pytest.approx(0.3465 * 2000 / 5280, rel=1e-3)
    assert line.z_ohm[0, 1].imag == pytest.approx(0.5017 * 2000 / 5280, rel=1e-3)
    taps = {x.name: x.windings[1].tap for x in feeder.transformers if x.name.startswith("reg")}
    # README: with regulator control active the taps settle at 9 / 6 / 9 steps of 0.00625.
    assert taps == pytest.approx({"reg1": 1.05625, "reg2": 1.0375, "reg3": 1.05625})


def test_unsupported_elements_are_listed_in_a_warning(tmp_path):
    body = RADIAL + "New Fuse.f1 monitoredobj=Line.l2\nNew Reactor.r1 bus1=b1 phases=3 kvar=100\n"
    with pytest.warns(UserWarning, match=r"1 Fuse.*1 Reactor \(shunt\)"):
        feeder_from_opendss(write_master(tmp_path, body))


def test_8500_fold_reports_counts(feeder_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        feeder = feeder_from_opendss(feeder_dir / "ieee8500/Master.dss")
    reduced = fold_split_phase_secondaries(feeder)
    (report,) = reduced.reductions
    assert report.buses_before == 4876 and report.buses_after < report.buses_before
    assert report.nodes_after == reduced.n_nodes
    # Folding keeps every load and the total load.
    assert len(reduced.loads) == len(feeder.loads)
    assert sum(ld.kw for ld in reduced.loads) == pytest.approx(sum(ld.kw for ld in feeder.loads))
    assert not any(x.is_center_tapped for x in reduced.transformers)


def test_missing_redirect_file_names_it(tmp_path):
    master = tmp_path / "master.dss"
    master.write_text("Clear\nNew Circuit.x basekv=12.47\nRedirect nowhere/Lines.dss\n")
    with pytest.raises(FeederInputError, match=r"Lines\.dss"):
        feeder_from_opendss(master)


def test_missing_master_file(tmp_path):
    with pytest.raises(FeederInputError, match=r"not found"):
        feeder_from_opendss(tmp_path / "absent.dss")


def test_malformed_dss_line_names_file_and_command(tmp_path):
    master = write_master(tmp_path, RADIAL + "New Line.bad bus1=b2 bus2=b3 lenght=oops\n")
    with pytest.raises(FeederInputError) as info:
        feeder_from_opendss(master)
    assert "master.dss" in str(info.value)


def test_meshed_network_error_names_the_loop(tmp_path):
    feeder = feeder_from_opendss(write_master(tmp_path, MESHED))
    with pytest.raises(MeshedNetworkError) as info:
        build_math_feeder(feeder)
    assert set(info.value.loop_branches) >= {"Line.l1", "Line.l2", "Line.l3"}
    assert "Line.l3" in str(info.value)


def test_bus_without_path_to_source(tmp_path):
    feeder = feeder_from_opendss(write_master(tmp_path, ISLANDED))
    with pytest.raises(IslandedBusError) as info:
        build_math_feeder(feeder)
    assert "x2" in info.value.buses


def test_non_finite_load_in_dss_is_rejected(tmp_path):
    body = RADIAL + "New Load.broken bus1=b1 phases=3 kv=12.47 kw=-inf kvar=0\n"
    with pytest.raises(FeederInputError, match="broken"):
        feeder_from_opendss(write_master(tmp_path, body))


def test_unknown_feeder_name_lists_builtins():
    with pytest.raises(UnknownFeederError, match="case33bw"):
        resolve_feeder_spec("ieee-does-not-exist")


def test_radial_tiny_feeder_math_model(tmp_path):
    feeder = feeder_from_opendss(write_master(tmp_path, RADIAL))
    math = build_math_feeder(feeder)
    assert math.n_nodes == 9 and math.is_root.sum() == 3
    assert np.all(math.parent[~math.is_root] >= 0)
    # distance of b2 = 2 km (two 1-km lines)
    b2 = [i for i, n in enumerate(math.node_names) if n.startswith("b2.")]
    assert math.distance_km[b2] == pytest.approx([2.0, 2.0, 2.0])
