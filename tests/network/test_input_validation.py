"""Broken feeders give clear errors naming the element (issue 10, item 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gridrecourse.errors import FeederInputError
from gridrecourse.evaluation.validation import validate_feeder
from gridrecourse.network.io_json import feeder_from_dict, feeder_to_dict, feeder_to_json
from gridrecourse.network.io_opendss import feeder_from_opendss
from gridrecourse.network.loading import resolve_feeder_spec

BASE = """Clear
New Circuit.tiny basekv=12.47 pu=1.0 phases=3 bus1=src
New Linecode.lc nphases=3 r1=0.3 x1=0.6 r0=0.6 x0=1.2 c1=0 c0=0 units=km
New Line.l1 bus1=src bus2=b1 linecode=lc length=1 units=km
New Line.l2 bus1=b1.1 bus2=b2.1 phases=1 r1=0.3 x1=0.6 r0=0.6 x0=1.2 c1=0 c0=0
~ length={length} units=km
New Load.ld1 bus1=b1 phases=3 kV=12.47 kW=300 kvar=100
New Load.ld2 bus1={load_bus} phases=1 kV=7.2 kW=50 kvar=10
Set VoltageBases=[12.47]
CalcVoltageBases
"""


def _write(tmp_path, **fields) -> str:
    values = {"length": 0.5, "load_bus": "b2.1"} | fields
    path = tmp_path / "tiny.dss"
    path.write_text(BASE.format(**values))
    return str(path)


def test_the_tiny_circuit_imports(tmp_path):
    feeder = feeder_from_opendss(_write(tmp_path))
    assert {b.name: b.phases for b in feeder.buses}["b2"] == (1,)


def test_negative_line_length_names_the_line(tmp_path):
    with pytest.raises(FeederInputError, match=r"Line\.l2: length -0\.5 km"):
        feeder_from_opendss(_write(tmp_path, length=-0.5))


def test_load_on_a_phase_its_bus_lacks_names_the_load(tmp_path):
    with pytest.raises(FeederInputError, match=r"Load\.ld2: on phase\(s\) \[2\] of bus 'b2'"):
        feeder_from_opendss(_write(tmp_path, load_bus="b2.2"))


def test_self_loop_branch_names_the_line(tmp_path):
    path = tmp_path / "loop.dss"
    path.write_text(BASE.format(length=0.5, load_bus="b2.1").replace("bus2=b2.1", "bus2=b1.1"))
    path.write_text(path.read_text().replace("bus1=b2.1 phases=1 kV", "bus1=b1.1 phases=1 kV"))
    with pytest.raises(FeederInputError, match=r"Line\.l2: connects bus 'b1' to itself"):
        feeder_from_opendss(str(path))


def test_empty_file_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.dss"
    path.write_text("")
    with pytest.raises(FeederInputError, match="the file is empty"):
        feeder_from_opendss(str(path))


@pytest.mark.parametrize(
    "text", ["! only a comment\n", "Set VoltageBases=[12.47]\n", "hello world\n"]
)
def test_non_opendss_file_is_a_clear_error(tmp_path, text):
    path = tmp_path / "junk.dss"
    path.write_text(text)
    with pytest.raises(FeederInputError, match=str(path)):
        feeder_from_opendss(str(path))


def _tiny_dict(tmp_path) -> dict:
    return feeder_to_dict(feeder_from_opendss(_write(tmp_path)))


def test_json_bus_without_phases_names_the_bus(tmp_path):
    data = _tiny_dict(tmp_path)
    bus = next(b for b in data["buses"] if b["name"] == "b2")
    bus["phases"] = []
    with pytest.raises(FeederInputError, match=r"Bus\.b2: has no phases"):
        feeder_from_dict(data, "x.json")


def test_json_load_on_missing_phase_names_the_element(tmp_path):
    data = _tiny_dict(tmp_path)
    load = next(x for x in data["loads"] if x["name"] == "ld2")
    load["phases"] = [3]
    with pytest.raises(FeederInputError, match=r"Load\.ld2: on phase\(s\) \[3\] of bus 'b2'"):
        feeder_from_dict(data, "x.json")


def test_json_negative_length_and_self_loop(tmp_path):
    data = _tiny_dict(tmp_path)
    line = next(x for x in data["lines"] if x["name"] == "l2")
    line["length_km"] = -1.0
    line["bus2"] = line["bus1"]
    with pytest.raises(FeederInputError) as info:
        feeder_from_dict(data, "x.json")
    assert "Line.l2: connects bus 'b1' to itself" in str(info.value)
    assert "Line.l2: length -1.0 km" in str(info.value)


def test_json_unknown_field_and_wrong_type_name_the_field(tmp_path):
    data = _tiny_dict(tmp_path)
    data["buses"][0]["colour"] = "red"
    with pytest.raises(FeederInputError, match=r"buses\[0\]\.colour: unknown field"):
        feeder_from_dict(data, "x.json")
    data = _tiny_dict(tmp_path)
    data["loads"][0]["kw"] = "lots"
    with pytest.raises(FeederInputError, match=r"loads\[0\]\.kw: expected a number"):
        feeder_from_dict(data, "x.json")


@pytest.mark.shared
def test_json_round_trip_validates_exactly_like_its_source(feeder_dir, tmp_path):
    source = validate_feeder("ieee13").result
    path = tmp_path / "ieee13.json"
    feeder_to_json(resolve_feeder_spec("ieee13"), path)
    again = validate_feeder(str(path)).result
    assert again.n_nodes == source.n_nodes and again.worst_node == source.worst_node
    for key in (
        "max_abs_voltage_error_pu",
        "max_abs_voltage_error_pu_loss_corrected",
        "substation_p_error_pct",
    ):
        assert getattr(again, key) == getattr(source, key)
    assert json.loads(path.read_text())["name"] == "ieee13nodeckt"
    assert np.isfinite(again.max_abs_voltage_error_pu)


def test_zero_line_length_names_the_line(tmp_path):
    """OpenDSS cannot build a zero-length line's admittance; the error names the line (real
    connectors are switches or short lines, which import)."""
    with pytest.raises(FeederInputError, match=r'Line "l2"'):
        feeder_from_opendss(_write(tmp_path, length=0))
