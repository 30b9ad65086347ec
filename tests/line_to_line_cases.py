"""Hand-built delta three-wire feeders with line-to-line regulator banks (OpenDSS scripts).

Shared by the line-to-line regulator tests and the siting flow-range test: a 3-wire feeder, a
bank of two (open-delta) or three (closed-delta) single-phase regulators connected between
phase pairs with their own taps, and phase-to-phase loads at ``b2`` and ``b3``.
"""

from __future__ import annotations

LINECODE = """New Linecode.lc3 nphases=3 units=km
~ rmatrix=(0.30 | 0.10 0.31 | 0.09 0.11 0.30)
~ xmatrix=(0.70 | 0.32 0.72 | 0.28 0.30 0.71)
"""
DOWNSTREAM = """New Line.l2 bus1=r1.1.2.3 bus2=b2.1.2.3 phases=3 linecode=lc3 length=2.0
New Line.l3 bus1=b2.1.2.3 bus2=b3.1.2.3 phases=3 linecode=lc3 length=1.0
New Load.ab bus1=b2.1.2 phases=1 conn=delta kv=12.47 kw=900 kvar=300 model=1
New Load.bc bus1=b3.2.3 phases=1 conn=delta kv=12.47 kw=500 kvar=200 model=1
New Load.ca bus1=b3.3.1 phases=1 conn=delta kv=12.47 kw=1400 kvar=500 model=1
New Load.abc bus1=b3 phases=3 conn=delta kv=12.47 kw=600 kvar=250 model=1
"""


def _regulator(name: str, pair: str, tap: float, conns: str) -> str:
    return (
        f"New Transformer.{name} phases=1 windings=2 buses=[b1.{pair} r1.{pair}] {conns}"
        " kvs=[12.47 12.47] kva=5000 xhl=0.5 %loadloss=0.05\n"
        f"~ wdg=2 tap={tap}\n"
        f"New RegControl.{name} transformer={name} winding=2 vreg=125 band=40 ptratio=104\n"
    )


def open_delta_master(folder) -> str:
    """Wye source, 3-wire line, open-delta bank (A–B, C–B; delta windings), delta loads."""
    body = (
        "Clear\nNew Circuit.opendeltareg basekv=12.47 pu=1.0 phases=3 bus1=src "
        "MVAsc3=200000 MVAsc1=210000\n"
        + LINECODE
        + "New Line.l1 bus1=src.1.2.3 bus2=b1.1.2.3 phases=3 linecode=lc3 length=1.5\n"
        + _regulator("rega", "1.2", 1.0375, "conns=[delta delta]")
        + _regulator("regc", "3.2", 1.025, "conns=[delta delta]")
        + DOWNSTREAM
        + "Set voltagebases=[12.47]\nCalcvoltagebases\n"
    )
    path = folder / "open_delta.dss"
    path.write_text(body)
    return str(path)


def closed_delta_master(folder, taps=(1.025, 1.025, 1.025)) -> str:
    """A delta source (69 kV wye → 12.47 kV delta), closed-delta bank of single-phase
    regulators written IEEE-37 style (wye windings on two nodes, ``bus.1.2``), delta loads."""
    body = (
        "Clear\nNew Circuit.closeddeltareg basekv=69 pu=1.0 phases=3 bus1=src "
        "MVAsc3=200000 MVAsc1=210000\n"
        "New Transformer.sub phases=3 windings=2 buses=[src sub] conns=[wye delta] "
        "kvs=[69 12.47] kvas=[10000 10000] xhl=2 %loadloss=0.2\n"
        + LINECODE
        + "New Line.l1 bus1=sub.1.2.3 bus2=b1.1.2.3 phases=3 linecode=lc3 length=1.5\n"
        + _regulator("rega", "1.2", taps[0], "")
        + _regulator("regb", "2.3", taps[1], "")
        + _regulator("regc", "3.1", taps[2], "")
        + DOWNSTREAM
        + "Set voltagebases=[69 12.47]\nCalcvoltagebases\n"
    )
    path = folder / "closed_delta.dss"
    path.write_text(body)
    return str(path)


def write_all(folder) -> list[str]:
    """The three masters of the README's hand-built rows, each in its own subfolder."""
    from pathlib import Path

    root = Path(folder)
    cases = [("open_delta", open_delta_master, {}), ("closed_delta", closed_delta_master, {})]
    cases.append(("closed_delta_unequal", closed_delta_master, {"taps": (1.0375, 1.025, 1.0125)}))
    paths = []
    for name, make, kw in cases:
        (root / name).mkdir(parents=True, exist_ok=True)
        paths.append(make(root / name, **kw))
    return paths


if __name__ == "__main__":  # python tests/line_to_line_cases.py DIR: write the masters
    import sys

    print("\n".join(write_all(sys.argv[1])))
