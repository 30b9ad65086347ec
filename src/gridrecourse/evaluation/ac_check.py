"""AC power flow in OpenDSS: the independent reference for every linear model and decision.

Two uses:

* :func:`read_snapshot` reads the solved state of the circuit in the OpenDSS engine (node
  voltages, per-node injections of every load/DER, substation power), used by
  :mod:`gridrecourse.evaluation.validation` to measure LinDist3Flow's error;
* :func:`check_decisions` pushes a set of decisions (regulator taps, switch states, capacitor
  steps, PV outputs, load levels) into OpenDSS with controls off, solves the AC power flow and
  reports voltage and thermal violations. Every method's decisions go through it.

Feeders that did not come from OpenDSS are written to a DSS script first
(:mod:`gridrecourse.network.io_dss_writer`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import opendssdirect as dss

from gridrecourse.errors import FeederInputError
from gridrecourse.network.components import Feeder
from gridrecourse.network.io_opendss import compile_opendss

#: Element classes whose powers are *not* nodal load/DER injections.
_NON_INJECTION = ("vsource", "capacitor")


@dataclass(frozen=True, eq=False)
class ACSnapshot:
    """A solved OpenDSS snapshot.

    Attributes
    ----------
    node_names : tuple of str
        ``bus.phase`` (lower case), phases 1–3 only.
    v_pu : ndarray
        Node-to-ground voltage magnitude (p.u. of the bus base).
    v_phasor_pu : ndarray of complex
        Node-to-ground voltage phasor (p.u.).
    injection_kw, injection_kvar : ndarray
        Power drawn at each node by loads, PV, generators and storage (generation negative).
    substation_kw, substation_kvar : float
        Power delivered by the voltage source(s).
    converged : bool
    """

    node_names: tuple[str, ...]
    v_pu: np.ndarray
    v_phasor_pu: np.ndarray
    injection_kw: np.ndarray
    injection_kvar: np.ndarray
    substation_kw: float
    substation_kvar: float
    converged: bool

    def index(self) -> dict[str, int]:
        """Map node name to position."""
        return {n: i for i, n in enumerate(self.node_names)}


def ensure_compiled(feeder: Feeder, workdir: Path | None = None) -> Path:
    """Compile ``feeder`` in OpenDSS: its own master if it came from OpenDSS, else a written one.

    Returns the master path that was compiled.
    """
    if (
        feeder.source_kind == "opendss"
        and feeder.source_path
        and Path(feeder.source_path).is_file()
    ):
        master, _ = compile_opendss(feeder.source_path, solve=False)
        return master
    from gridrecourse.network.io_dss_writer import write_opendss

    directory = Path(workdir or tempfile.mkdtemp(prefix="gridrecourse-dss-"))
    master_path = write_opendss(feeder, directory)
    master, _ = compile_opendss(master_path, solve=False)
    return master


def read_snapshot() -> ACSnapshot:
    """Read the solved state of the circuit currently in the OpenDSS engine."""
    names = [n.lower() for n in dss.Circuit.AllNodeNames()]
    mags = np.asarray(dss.Circuit.AllBusMagPu(), dtype=float)
    keep = np.array([n.rsplit(".", 1)[1] in ("1", "2", "3") for n in names])
    volts = np.asarray(dss.Circuit.AllBusVolts(), dtype=float)
    phasor = volts[0::2] + 1j * volts[1::2]
    base = np.empty(len(names))
    for bus in dss.Circuit.AllBusNames():
        dss.Circuit.SetActiveBus(bus)
        kvb = dss.Bus.kVBase() * 1000.0
        for node in dss.Bus.Nodes():
            base[names.index(f"{bus.lower()}.{node}")] = kvb if kvb > 0 else np.nan
    node_names = tuple(np.asarray(names)[keep])
    index = {n: i for i, n in enumerate(node_names)}
    s = np.zeros(len(node_names), dtype=complex)
    element = dss.Circuit.FirstPCElement()
    while element > 0:
        name = dss.CktElement.Name().lower()
        if dss.CktElement.Enabled() and not name.startswith(_NON_INJECTION):
            bus = dss.CktElement.BusNames()[0].split(".")[0].lower()
            nodes = dss.CktElement.NodeOrder()
            powers = np.asarray(dss.CktElement.Powers(), dtype=float)
            for k, node in enumerate(nodes[: len(powers) // 2]):
                key = f"{bus}.{node}"
                if node and key in index:
                    s[index[key]] += powers[2 * k] + 1j * powers[2 * k + 1]
        element = dss.Circuit.NextPCElement()
    total = dss.Circuit.TotalPower()
    return ACSnapshot(
        node_names=node_names,
        v_pu=mags[keep],
        v_phasor_pu=(phasor / base)[keep],
        injection_kw=s.real,
        injection_kvar=s.imag,
        substation_kw=-float(total[0]),
        substation_kvar=-float(total[1]),
        converged=bool(dss.Solution.Converged()),
    )


@dataclass(frozen=True)
class Decisions:
    """Decisions to push into OpenDSS (all optional; absent ones keep the circuit's values).

    Attributes
    ----------
    taps : dict
        ``{(transformer, winding): tap p.u.}``.
    switch_closed : dict
        ``{switch/line name: closed}``.
    capacitor_steps_closed : dict
        ``{capacitor name: fraction of steps closed (0 or 1 for single-step)}``.
    pv_kw : dict
        ``{PVSystem name: active output kW}`` (applied as ``irradiance=1``, ``%Pmpp``).
    load_kw, load_kvar : dict
        ``{load name: total kW / kvar}``.
    """

    taps: dict[tuple[str, int], float] = field(default_factory=dict)
    switch_closed: dict[str, bool] = field(default_factory=dict)
    capacitor_steps_closed: dict[str, float] = field(default_factory=dict)
    pv_kw: dict[str, float] = field(default_factory=dict)
    load_kw: dict[str, float] = field(default_factory=dict)
    load_kvar: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class ACCheckReport:
    """AC voltage and thermal violations of a set of decisions.

    Attributes
    ----------
    converged : bool
    v_min_pu, v_max_pu : float
        Extreme node voltages over the primary nodes checked.
    n_voltage_violations : int
        Nodes outside ``[v_lower, v_upper]``.
    max_voltage_violation_pu : float
        Largest distance outside the band (0 when none).
    n_thermal_violations : int
        Branch elements whose current exceeds their normal ampacity.
    max_loading_pct : float
        Highest current as percent of normal ampacity.
    violating_nodes, overloaded_branches : tuple of str
    substation_kw : float
    """

    converged: bool
    v_min_pu: float
    v_max_pu: float
    n_voltage_violations: int
    max_voltage_violation_pu: float
    n_thermal_violations: int
    max_loading_pct: float
    violating_nodes: tuple[str, ...]
    overloaded_branches: tuple[str, ...]
    substation_kw: float


def _command(text: str) -> None:
    try:
        dss.Text.Command(text)
    except Exception as exc:
        raise FeederInputError(f"OpenDSS rejected {text!r}: {exc}") from exc


def apply_decisions(decisions: Decisions) -> None:
    """Write decisions into the compiled circuit (controls are switched off)."""
    _command("Set controlmode=off")
    for (xf, winding), tap in decisions.taps.items():
        _command(f"Transformer.{xf}.wdg={winding}")
        _command(f"Transformer.{xf}.tap={tap:.6f}")
    for name, closed in decisions.switch_closed.items():
        if closed:
            _command(f"Line.{name}.enabled=yes")
            _command(f"close Line.{name} 1")
            _command(f"close Line.{name} 2")
        else:
            _command(f"open Line.{name} 1")
    for name, frac in decisions.capacitor_steps_closed.items():
        dss.Capacitors.Name(name)
        n = dss.Capacitors.NumSteps()
        closed = round(frac * n)
        dss.Capacitors.States([1] * closed + [0] * (n - closed))
    for name, kw in decisions.pv_kw.items():
        dss.PVsystems.Name(name)
        pmpp = dss.PVsystems.Pmpp()
        _command(f"PVSystem.{name}.irradiance=1")
        _command(f"PVSystem.{name}.%Pmpp={100.0 * kw / pmpp if pmpp > 0 else 0.0:.6f}")
    for name, kw in decisions.load_kw.items():
        dss.Loads.Name(name)
        dss.Loads.kW(kw)
    for name, kvar in decisions.load_kvar.items():
        dss.Loads.Name(name)
        dss.Loads.kvar(kvar)


def check_decisions(
    feeder: Feeder,
    decisions: Decisions,
    *,
    v_lower: float = 0.95,
    v_upper: float = 1.05,
    min_kv_ll: float = 1.0,
) -> ACCheckReport:
    """Push decisions into OpenDSS, solve the AC power flow and report violations.

    Parameters
    ----------
    feeder : Feeder
        The feeder the decisions were made on (its OpenDSS master, or a written script).
    decisions : Decisions
    v_lower, v_upper : float
        Voltage band (p.u.).
    min_kv_ll : float
        Only nodes with a base at or above this line-to-line kV are checked (secondaries of
        folded service transformers are not part of the decision model).
    """
    ensure_compiled(feeder)
    apply_decisions(decisions)
    _command("Set maxiterations=100")
    _command("Solve")
    snap = read_snapshot()
    bases = _node_bases_kv_ll(snap.node_names)
    mask = bases >= min_kv_ll
    v = snap.v_pu[mask]
    names = np.asarray(snap.node_names)[mask]
    over = np.maximum(v - v_upper, 0.0) + np.maximum(v_lower - v, 0.0)
    bad = over > 1e-9
    loadings, branch_names = _branch_loadings()
    overloaded = loadings > 100.0
    return ACCheckReport(
        converged=snap.converged,
        v_min_pu=float(v.min()) if len(v) else float("nan"),
        v_max_pu=float(v.max()) if len(v) else float("nan"),
        n_voltage_violations=int(bad.sum()),
        max_voltage_violation_pu=float(over.max()) if len(over) else 0.0,
        n_thermal_violations=int(overloaded.sum()),
        max_loading_pct=float(loadings.max()) if len(loadings) else 0.0,
        violating_nodes=tuple(names[bad]),
        overloaded_branches=tuple(np.asarray(branch_names)[overloaded]),
        substation_kw=snap.substation_kw,
    )


def _node_bases_kv_ll(node_names: tuple[str, ...]) -> np.ndarray:
    out = np.empty(len(node_names))
    cache: dict[str, float] = {}
    for i, name in enumerate(node_names):
        bus = name.rsplit(".", 1)[0]
        if bus not in cache:
            dss.Circuit.SetActiveBus(bus)
            cache[bus] = dss.Bus.kVBase() * np.sqrt(3.0)
        out[i] = cache[bus]
    return out


def _branch_loadings() -> tuple[np.ndarray, list[str]]:
    """Max conductor current in percent of normal ampacity, for lines and transformers."""
    loadings: list[float] = []
    names: list[str] = []
    element = dss.Circuit.FirstPDElement()
    while element > 0:
        name = dss.CktElement.Name()
        amps = dss.CktElement.NormalAmps()
        if (
            dss.CktElement.Enabled()
            and amps > 0
            and name.lower().startswith(("line.", "transformer."))
        ):
            cur = np.asarray(dss.CktElement.CurrentsMagAng(), dtype=float)[0::2]
            n = dss.CktElement.NumPhases()
            loadings.append(100.0 * float(cur[:n].max()) / amps)
            names.append(name)
        element = dss.Circuit.NextPDElement()
    return np.asarray(loadings), names
