"""Tests of the JSON feeder format (gridrecourse.network.io_json)."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gridrecourse.errors import FeederInputError
from gridrecourse.network.components import (
    Bus,
    Capacitor,
    Connection,
    Feeder,
    Generator,
    Line,
    Load,
    LoadModel,
    PVSystem,
    ReductionReport,
    Regulator,
    Root,
    Storage,
    Switch,
    Transformer,
    Winding,
)
from gridrecourse.network.io_json import (
    FORMAT_NAME,
    FORMAT_VERSION,
    feeder_from_dict,
    feeder_from_json,
    feeder_to_dict,
    feeder_to_json,
)

INF = math.inf


def _z(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))
    return (a + a.T) / 3.0 + np.eye(n) * (0.1 + 0.3j)


def full_feeder() -> Feeder:
    """A feeder using every component type and every awkward value."""
    buses = (
        Bus("src", (1, 2, 3), 7.199557856794634, 0.0, 0.0),
        Bus("b 1", (1, 2, 3), 7.199557856794634, 1.5, -2.25),
        Bus("b.2", (1, 2, 3), 7.199557856794634, None, None),
        Bus("lat", (3,), 7.199557856794634, 3.0, None),
        Bus("sec", (1, 2), 0.12, None, 4.0),
    )
    lines = (
        Line("l1", "src", "b 1", (1, 2, 3), (1, 2, 3), _z(3, 1), 1j * 1e-6 * np.eye(3)),
        Line(
            "l2",
            "b 1",
            "b.2",
            (1, 2, 3),
            (1, 2, 3),
            _z(3, 2),
            np.zeros((3, 3), dtype=complex),
            norm_amps=400.0,
            emerg_amps=600.0,
            length_km=0.1 + 0.2,
        ),
        Line("l3", "b.2", "lat", (3,), (3,), np.array([[0.3 + 0.1j]]), np.zeros((1, 1))),
    )
    xf = Transformer(
        "t1",
        1,
        (
            Winding("lat", (3,), Connection.WYE, 7.2, 25.0, 0.6, 1.0),
            Winding("sec", (1,), Connection.WYE, 0.12, 25.0, 1.2, 1.025),
            Winding("sec", (), Connection.WYE, 0.12, 25.0, 1.2),
        ),
        (2.04, 2.04, 1.36),
    )
    reg = Transformer(
        "reg",
        3,
        (
            Winding("src", (1, 2, 3), Connection.DELTA, 12.47, 5000.0, 0.001),
            Winding("b 1", (1, 2, 3), Connection.WYE, 12.47, 5000.0, 0.001, 1.0125),
        ),
        (0.01,),
    )
    return Feeder(
        name="everything",
        buses=buses,
        roots=(Root("src", (1.02, 1.01, 1.03), (0.0, -119.5, 120.25)), Root("sec", (1.0, 1.0))),
        lines=lines,
        switches=(
            Switch("s1", "b 1", "b.2", (1, 2, 3), (1, 2, 3), True),
            Switch("s2", "src", "b.2", (1, 2, 3), (1, 2, 3), False, 300.0),
        ),
        transformers=(xf, reg),
        regulators=(Regulator("rg", "reg", 2, 0.9, 1.1, 32, 122.0, 2.0, 60.0, enabled=False),),
        capacitors=(Capacitor("c1", "b.2", (1, 2, 3), Connection.DELTA, 600.0, 12.47, 0.5),),
        loads=(
            Load("ld1", "b.2", (1, 2, 3), Connection.WYE, 300.0, 100.0, 12.47),
            Load("ld2", "sec", (1, 2), Connection.DELTA, 3.0, 1.0, 0.24, LoadModel.CONSTANT_Z),
            Load(
                "ld3",
                "b 1",
                (2,),
                Connection.WYE,
                10.0,
                -2.0,
                7.2,
                model=8,
                zipv=(0.2, 0.3, 0.5, 0.1, 0.1, 0.8, 0.0),
            ),
            Load("ld4", "b 1", (1,), Connection.WYE, 1.0, 0.0, 7.2, model=42),
        ),
        pv_systems=(PVSystem("pv1", "lat", (3,), Connection.WYE, 10.0, 8.0, 6.0, 1.0, 7.2),),
        generators=(Generator("g1", "b.2", (1, 2, 3), Connection.WYE, 50.0, 10.0, 100.0, 12.47),),
        storage=(
            Storage(
                "st1", "b 1", (1, 2, 3), Connection.WYE, 100.0, 400.0, 120.0, 20.0, -5.0, 12.47
            ),
        ),
        source_path=None,
        source_kind="synthetic",
        frequency_hz=50.0,
        reductions=(
            ReductionReport("fold", 6, 5, 12, 10, 6, 5, (("x", "lat", 3), ("y", "lat", 3))),
        ),
    )


def assert_same(a: Any, b: Any, path: str = "feeder") -> None:
    """Field-by-field equality, including types of containers, enums and arrays."""
    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), path
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), path
        assert a.shape == b.shape, path
        assert np.array_equal(a.astype(complex), b, equal_nan=True), path
    elif isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert isinstance(b, float), path
        assert (math.isnan(a) and math.isnan(b)) or a == b, f"{path}: {a!r} != {b!r}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
        assert isinstance(b, type(a)) or isinstance(a, type(b)), path
        if isinstance(a, Connection):
            assert b is a, path


def test_round_trip_every_field(tmp_path: Path) -> None:
    feeder = full_feeder()
    path = feeder_to_json(feeder, tmp_path / "f.json")
    back = feeder_from_json(path)
    assert_same(feeder, back)
    assert back.loads[1].model is LoadModel.CONSTANT_Z
    assert back.loads[2].model is LoadModel.ZIP
    assert back.loads[3].model == 42  # not a LoadModel member: kept as int
    assert back.lines[0].emerg_amps == INF
    assert back.buses[2].x is None and back.buses[3].y is None
    assert back.lines[2].z_ohm.dtype == complex
    assert back.reductions[0].folded_buses == (("x", "lat", 3), ("y", "lat", 3))


def test_file_is_strict_json_with_header(tmp_path: Path) -> None:
    path = feeder_to_json(full_feeder(), tmp_path / "f.json")
    text = path.read_text()

    def reject(name: str) -> None:
        raise AssertionError(f"non-standard constant {name}")

    data = json.loads(text, parse_constant=reject)
    assert list(data)[:2] == ["format", "version"]
    assert data["format"] == FORMAT_NAME and data["version"] == FORMAT_VERSION
    assert data["lines"][0]["norm_amps"] == "inf"
    assert data["lines"][0]["z_ohm"].keys() == {"real", "imag"}
    assert data["loads"][0]["connection"] == "wye"


def test_nan_round_trip() -> None:
    feeder = dataclasses.replace(full_feeder(), frequency_hz=math.nan)
    back = feeder_from_dict(json.loads(json.dumps(feeder_to_dict(feeder))))
    assert math.isnan(back.frequency_hz)


def test_round_trip_pandapower_feeders(tmp_path: Path) -> None:
    from gridrecourse.network.io_pandapower import load_pandapower_case

    for name in ("case33bw", "ieee_european_lv_asymmetric"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            feeder = load_pandapower_case(name)
        back = feeder_from_json(feeder_to_json(feeder, tmp_path / f"{name}.json"))
        assert_same(feeder, back)


def test_resolve_feeder_spec_reads_json(tmp_path: Path) -> None:
    from gridrecourse.network.loading import resolve_feeder_spec

    path = feeder_to_json(full_feeder(), tmp_path / "f.json")
    assert_same(full_feeder(), resolve_feeder_spec(str(path)))


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    target.write_text("old")
    feeder_to_json(full_feeder(), target)
    assert json.loads(target.read_text())["name"] == "everything"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_failed_write_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    target.write_text("old")
    bad = dataclasses.replace(full_feeder(), frequency_hz="fast")  # type: ignore[arg-type]
    with pytest.raises(FeederInputError, match="frequency_hz"):
        feeder_to_json(bad, target)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def _write_data(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return path


def _mutated(tmp_path: Path, mutate: Any) -> Path:
    data = feeder_to_dict(full_feeder())
    mutate(data)
    return _write_data(tmp_path, data)


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda d: d.update(format="something-else"), r"'format'.*'something-else'"),
        (lambda d: d.update(version=2), r"'version' is 2"),
        (lambda d: d.update(version=True), r"'version' is True"),
        (lambda d: d.pop("version"), r"'version' is None"),
        (lambda d: d["lines"][2].pop("z_ohm"), r"lines\[2\]\.z_ohm: missing field"),
        (lambda d: d.pop("buses"), r"field buses: missing"),
        (lambda d: d["lines"][1].update(norm_amps="lots"), r"lines\[1\]\.norm_amps"),
        (lambda d: d["lines"][0]["z_ohm"]["real"].pop(), r"lines\[0\]\.z_ohm\.real.*square"),
        (lambda d: d["lines"][0].update(z_ohm=[[1, 2], [3, 4]]), r"lines\[0\]\.z_ohm.*matrix"),
        (lambda d: d["lines"][0]["z_ohm"]["imag"][1].__setitem__(0, None), r"imag\[1\]\[0\]"),
        (lambda d: d["buses"][0].update(phases="123"), r"buses\[0\]\.phases: expected an array"),
        (lambda d: d["buses"][0].update(phases=[1, 2.5]), r"buses\[0\]\.phases\[1\]"),
        (lambda d: d["switches"][0].update(closed=1), r"switches\[0\]\.closed"),
        (lambda d: d["loads"][0].update(connection="star"), r"loads\[0\]\.connection"),
        (lambda d: d["loads"][0].update(model=1.0), r"loads\[0\]\.model"),
        (lambda d: d["buses"][1].update(x="left"), r"buses\[1\]\.x"),
        (lambda d: d["transformers"][0]["windings"][1].update(kv=None), r"windings\[1\]\.kv"),
        (lambda d: d["reductions"][0].update(folded_buses=[["x", "y"]]), r"folded_buses\[0\]"),
        (lambda d: d["roots"][0].update(colour="red"), r"roots\[0\]\.colour: unknown field"),
        (lambda d: d.update(name=7), r"field name: expected a string"),
        (lambda d: d.update(lines={}), r"field lines: expected an array"),
    ],
)
def test_malformed_fields_name_file_and_path(tmp_path: Path, mutate: Any, pattern: str) -> None:
    path = _mutated(tmp_path, mutate)
    with pytest.raises(FeederInputError, match=pattern) as info:
        feeder_from_json(path)
    assert str(path) in str(info.value)


def test_malformed_json_text(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"format": "gridrecourse-feeder", "version": 1,,}')
    with pytest.raises(FeederInputError, match=r"broken\.json: invalid JSON at line 1"):
        feeder_from_json(path)


def test_nonstandard_constants_rejected(tmp_path: Path) -> None:
    path = tmp_path / "nan.json"
    text = json.dumps(feeder_to_dict(full_feeder())).replace('"inf"', "Infinity", 1)
    path.write_text(text)
    with pytest.raises(FeederInputError, match="Infinity"):
        feeder_from_json(path)


def test_top_level_not_object_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FeederInputError, match="expected a JSON object"):
        feeder_from_json(_write_data(tmp_path, [1, 2]))
    with pytest.raises(FeederInputError, match="not found"):
        feeder_from_json(tmp_path / "nope.json")
