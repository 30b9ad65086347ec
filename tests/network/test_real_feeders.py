"""Real-feeder import: parallel elements merged, parallel banks cut, dangling ties dropped."""

from __future__ import annotations

import numpy as np
import pytest

from gridrecourse.evaluation.validation import validate_feeder
from gridrecourse.network.io_opendss import feeder_from_opendss

HEAD = """Clear
New Circuit.par basekv=12.47 pu=1.0 phases=3 bus1=src
New Linecode.lc nphases=3 r1=0.3 x1=0.6 r0=0.6 x0=1.2 c1=0 c0=0 units=km
New Line.l0 bus1=src bus2=b1 linecode=lc length=1 units=km
"""
TAIL = """New Load.ld bus1=b3 phases=3 kV=4.16 kW=900 kvar=300
Set VoltageBases=[12.47, 4.16]
CalcVoltageBases
"""


def _circuit(tmp_path, body: str) -> str:
    path = tmp_path / "par.dss"
    path.write_text(HEAD + body + TAIL)
    return str(path)


PARALLEL = """New Line.la bus1=b1 bus2=b2 linecode=lc length=2 units=km
New Line.lb bus1=b2 bus2=b1 linecode=lc length=2 units=km
New Transformer.ta phases=3 windings=2 buses=[b2 b3] conns=[wye wye] kVs=[12.47 4.16]
~ kVAs=[1000 1000] %rs=[1 1] xhl=6
New Transformer.tb phases=3 windings=2 buses=[b2 b3] conns=[wye wye] kVs=[12.47 4.16]
~ kVAs=[500 500] %rs=[0.5 0.5] xhl=4
"""


def test_parallel_lines_and_transformers_are_merged_into_equivalents(tmp_path):
    feeder = feeder_from_opendss(_circuit(tmp_path, PARALLEL))
    assert [ln.name for ln in feeder.lines] == ["l0", "la"]
    assert [x.name for x in feeder.transformers] == ["ta"]
    la = next(ln for ln in feeder.lines if ln.name == "la")
    l0 = next(ln for ln in feeder.lines if ln.name == "l0")
    # two equal 2-km lines in parallel = one 1-km line
    np.testing.assert_allclose(la.z_ohm, l0.z_ohm, rtol=1e-9)
    xf = feeder.transformers[0]
    # admittances on a common base: z = S / (S1/z1 + S2/z2), S = 1500 kVA
    z = 1500 / (1000 / complex(2, 6) + 500 / complex(1, 4))
    assert xf.windings[0].kva == 1500
    assert 2 * xf.windings[0].r_pct == pytest.approx(z.real)
    assert xf.x_pct[0] == pytest.approx(z.imag)
    assert "1 line group(s), 1 transformer group(s)" in feeder.reductions[0].description
    # the merged model against OpenDSS's AC solution of the unmerged circuit
    result = validate_feeder(_circuit(tmp_path, PARALLEL)).result
    assert result.max_abs_voltage_error_pu_loss_corrected < 0.002


BANKS = """New Line.la bus1=b1 bus2=b2 linecode=lc length=0.1 units=km
New Transformer.ta phases=3 windings=2 buses=[b1 b3] conns=[wye wye] kVs=[12.47 4.16]
~ kVAs=[2000 2000] %rs=[0.5 0.5] xhl=3
New Transformer.tb phases=3 windings=2 buses=[b2 b4] conns=[wye wye] kVs=[12.47 4.16]
~ kVAs=[500 500] %rs=[0.5 0.5] xhl=3
New Line.lv bus1=b4 bus2=b3 linecode=lc length=0.05 units=km
"""


def test_banks_in_parallel_through_the_network_keep_the_one_carrying_most_power(tmp_path):
    feeder = feeder_from_opendss(_circuit(tmp_path, BANKS))
    assert [x.name for x in feeder.transformers] == ["ta"]
    assert "cut 1 transformer(s)" in feeder.reductions[-1].description
    assert "'tb'" in feeder.reductions[-1].description
    result = validate_feeder(_circuit(tmp_path, BANKS)).result
    # the cut bank carried part of the load in AC: the error is measured, and small here
    assert result.max_abs_voltage_error_pu_loss_corrected < 0.01


def test_disabled_tie_to_a_bus_only_it_names_is_dropped_and_counted(tmp_path):
    body = PARALLEL + "New Line.tie bus1=nowhere bus2=b2 linecode=lc length=1 enabled=no\n"
    feeder = feeder_from_opendss(_circuit(tmp_path, body))
    assert "tie" not in {s.name for s in feeder.switches}
    assert any("'tie'" in r.description for r in feeder.reductions)


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize(
    ("master", "target"),
    [("epri-ckt5/Master_ckt5.dss", 0.020), ("epri-ckt24/master_ckt24.dss", 0.020)],
)
def test_epri_utility_circuits_import_without_edits(feeder_dir, master, target):
    run = validate_feeder(str(feeder_dir / master))
    primary = run.math.kv_base_ln * np.sqrt(3.0) >= 1.0
    err = run.table["abs_error_corrected_pu"].to_numpy()[primary]
    assert run.result.ac_converged
    assert np.nanmax(err) <= target
    assert run.result.reductions  # every simplification is recorded


LOOP = """New Line.la bus1=b1 bus2=b2 linecode=lc length=1 units=km
New Line.lb bus1=b2 bus2=b4 linecode=lc length=1 units=km
New Line.lc bus1=b1 bus2=b4 linecode=lc length=1 units=km {switch}
New Transformer.t phases=3 windings=2 buses=[b4 b3] conns=[wye wye] kVs=[12.47 4.16]
~ kVAs=[2000 2000] %rs=[0.5 0.5] xhl=3
"""


def test_loop_error_names_the_loop_and_the_switches_that_open_it(tmp_path):
    from gridrecourse.errors import MeshedNetworkError
    from gridrecourse.network.math_model import build_math_feeder

    feeder = feeder_from_opendss(_circuit(tmp_path, LOOP.format(switch="switch=yes")))
    with pytest.raises(MeshedNetworkError) as info:
        build_math_feeder(feeder)
    message = str(info.value)
    assert "Line.la" in message and "Line.lb" in message and "'b4'" in message
    assert "opening any one of the switches on it makes it radial: ['Switch.lc']" in message
    build_math_feeder(feeder, switch_states={"lc": False})  # and it does


def test_loop_without_switch_says_it_cannot_be_switched_radial(tmp_path):
    from gridrecourse.errors import MeshedNetworkError
    from gridrecourse.network.math_model import build_math_feeder

    feeder = feeder_from_opendss(_circuit(tmp_path, LOOP.format(switch="")))
    with pytest.raises(MeshedNetworkError, match="no switch is on this loop"):
        build_math_feeder(feeder)
