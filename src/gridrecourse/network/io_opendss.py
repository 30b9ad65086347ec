"""Import OpenDSS circuits into a :class:`~gridrecourse.network.components.Feeder`.

The circuit is compiled and solved by OpenDSS itself (through OpenDSSDirect.py), and then read
element by element from the compiled circuit, so everything OpenDSS supports for *defining*
elements (linecodes, geometries, wire data, spacings, XfmrCodes, ``~`` continuations, ``like=``,
redirects) is handled by OpenDSS, not re-parsed here.

* Line impedances come from each line's primitive admittance matrix (series part
  ``Z = -inv(Y12)`` after Kron reduction of any explicit neutral), so geometry-based lines get
  the impedance OpenDSS computed.
* Lines with ``switch=yes`` become :class:`Switch` objects (closed unless opened or disabled).
  Disabled non-switch lines become *open* switches (they are normally-open ties in the IEEE
  8500/9500 models); they are counted in the import report.
* The operating point of the solved snapshot is recorded: regulator taps, capacitor step states,
  PV, generator and storage output. Pass ``solve=False`` to keep the taps of the script.
* Elements gridrecourse does not model are listed in one ``UserWarning``, never silently dropped.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import opendssdirect as dss

from gridrecourse.errors import FeederInputError
from gridrecourse.network.components import (
    Bus,
    Capacitor,
    Connection,
    Feeder,
    Generator,
    Line,
    Load,
    PVSystem,
    ReductionReport,
    Regulator,
    Root,
    Storage,
    Switch,
    Transformer,
    Winding,
)
from gridrecourse.network.reduce import cut_parallel_banks, merge_parallel_branches
from gridrecourse.network.topology import check_feeder_elements

#: Element classes that map to components (controls are folded into the operating point).
MODELED_CLASSES = frozenset(
    {
        "Vsource",
        "Line",
        "Transformer",
        "Capacitor",
        "Load",
        "PVSystem",
        "Generator",
        "Storage",
        "RegControl",
        "CapControl",
    }
)
#: Measurement-only classes: no physics, listed in the report but not warned about.
MEASUREMENT_CLASSES = frozenset({"EnergyMeter", "Monitor", "Sensor"})

DEFAULT_MAX_ITERATIONS = 100
#: OpenDSS's own default; a script that needs another frequency sets it itself.
DEFAULT_BASE_FREQUENCY_HZ = 60
DEFAULT_MAX_CONTROL_ITERATIONS = 100


@dataclass(frozen=True)
class OpenDSSImportReport:
    """What the import did besides building components."""

    master: str
    converged: bool
    element_counts: dict[str, int]
    unsupported: dict[str, int]
    disabled_lines_as_open_switches: tuple[str, ...]
    skipped_disabled: tuple[str, ...]


def _run(command: str, master: Path) -> str:
    """Run one OpenDSS text command, turning OpenDSS errors into :class:`FeederInputError`."""
    try:
        dss.Text.Command(command)
    except Exception as exc:  # OpenDSSDirect raises DSSException with the engine's message
        raise FeederInputError(
            f"OpenDSS could not process {master}: {exc} (while running {command!r})"
        ) from exc
    return dss.Text.Result()


def _check_master(path: str | Path) -> Path:
    master = Path(path).expanduser().resolve()
    if not master.is_file():
        raise FeederInputError(f"OpenDSS master file not found: {master}")
    text = master.read_text(errors="replace")
    if not text.strip():
        raise FeederInputError(
            f"{master}: the file is empty; expected an OpenDSS script starting with "
            "'New Circuit.<name>' (or redirecting to one)"
        )
    for match in re.finditer(r"(?im)^\s*(?:redirect|compile)\s+(\"[^\"]+\"|\S+)", text):
        target = match.group(1).strip('"')
        candidate = (master.parent / target).resolve()
        if not candidate.exists():
            raise FeederInputError(
                f"{master}: redirected file {target!r} does not exist (looked for {candidate})"
            )
    return master


def compile_opendss(
    path: str | Path,
    *,
    solve: bool = True,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    max_control_iterations: int = DEFAULT_MAX_CONTROL_ITERATIONS,
) -> tuple[Path, bool]:
    """Compile an OpenDSS master into the (global) OpenDSS engine and optionally solve it.

    Parameters
    ----------
    path : str or Path
        OpenDSS master script.
    solve : bool
        Solve a snapshot with controls active so taps and capacitor states settle.
    max_iterations, max_control_iterations : int
        Power-flow and control iteration limits (the IEEE 8500 needs more than the default 15).

    Returns
    -------
    master : Path
        Resolved master path.
    converged : bool
        Whether the snapshot converged (``True`` when ``solve`` is ``False``).

    Raises
    ------
    FeederInputError
        Missing file, missing redirected file, or an OpenDSS parse error (message names both).
    """
    master = _check_master(path)
    cwd = os.getcwd()
    try:
        _run("Clear", master)
        # DefaultBaseFrequency survives Clear: a 50 Hz script must not leak into the next one.
        _run(f"Set DefaultBaseFrequency={DEFAULT_BASE_FREQUENCY_HZ}", master)
        _run(f'Compile "{master}"', master)
    finally:
        os.chdir(cwd)  # OpenDSS's Compile changes the process working directory
    try:
        n_buses = dss.Circuit.NumBuses()
    except Exception as exc:  # DSSException: "There is no active circuit"
        raise FeederInputError(
            f"{master}: not an OpenDSS circuit: compiling it defined no circuit; expected a "
            "'New Circuit.<name>' command"
        ) from exc
    if n_buses == 0:
        raise FeederInputError(f"{master}: compiled to an empty circuit (no buses)")
    _check_finite_loads(master)
    if not solve:
        return master, True
    _run(f"Set maxiterations={max_iterations} maxcontroliter={max_control_iterations}", master)
    _run("Set mode=snapshot", master)
    _run("Solve", master)
    return master, bool(dss.Solution.Converged())


def _check_finite_loads(master: Path) -> None:
    """Reject NaN or infinite load powers before OpenDSS tries (and fails) to solve them."""
    idx = dss.Loads.First()
    while idx > 0:
        kw, kvar = float(dss.Loads.kW()), float(dss.Loads.kvar())
        if not (np.isfinite(kw) and np.isfinite(kvar)):
            raise FeederInputError(
                f"{master}: Load.{dss.Loads.Name()} has kW={kw}, kvar={kvar}; expected finite "
                "numbers"
            )
        idx = dss.Loads.Next()


def _parse_bus(spec: str, n_conductors: int) -> tuple[str, tuple[int, ...]]:
    """Split ``'bus.1.2'`` into ``('bus', (1, 2))``; default nodes are 1..n."""
    parts = spec.split(".")
    name = parts[0].lower()
    if len(parts) == 1:
        return name, tuple(range(1, n_conductors + 1))
    return name, tuple(int(p) for p in parts[1:] if p != "")


def _phase_nodes(nodes: tuple[int, ...], n_phases: int) -> tuple[int, ...]:
    """The first ``n_phases`` nodes, dropping ground/neutral references (node 0)."""
    return tuple(n for n in nodes[:n_phases] if n != 0)


def _element_prop(full_name: str, prop: str) -> str:
    dss.Text.Command(f"? {full_name}.{prop}")
    return dss.Text.Result()


def _read_buses() -> tuple[Bus, ...]:
    buses = []
    for name in dss.Circuit.AllBusNames():
        dss.Circuit.SetActiveBus(name)
        nodes = tuple(sorted(n for n in dss.Bus.Nodes() if 1 <= n <= 3))
        if not nodes:
            continue  # a neutral/ground-only point (e.g. a reactor to ground): no phase bus
        has_xy = bool(dss.Bus.Coorddefined())
        buses.append(
            Bus(
                name=name.lower(),
                phases=nodes,
                kv_base_ln=float(dss.Bus.kVBase()),
                x=float(dss.Bus.X()) if has_xy else None,
                y=float(dss.Bus.Y()) if has_xy else None,
            )
        )
    return tuple(buses)


def _series_impedance(yprim: np.ndarray, n_cond: int, n_phases: int) -> np.ndarray:
    """Series impedance of a two-terminal element from its primitive admittance matrix.

    ``Y = [[Ys + Yc/2, -Ys], [-Ys, Ys + Yc/2]]``; ``Z = inv(Ys)``, Kron-reduced to the phase
    conductors when explicit neutral conductors are present (grounded at both ends).
    """
    y = yprim.reshape(2 * n_cond, 2 * n_cond)
    ys = -y[:n_cond, n_cond:]
    z = np.linalg.inv(ys)
    if n_cond > n_phases:
        # A neutral carried explicitly (kron=no): eliminate it from the series admittance.
        ys_pp = ys[:n_phases, :n_phases] - ys[:n_phases, n_phases:] @ np.linalg.solve(
            ys[n_phases:, n_phases:], ys[n_phases:, :n_phases]
        )
        z = np.linalg.inv(ys_pp)
    return z


def _read_lines() -> tuple[list[Line], list[Switch], list[str]]:
    lines: list[Line] = []
    switches: list[Switch] = []
    disabled_as_open: list[str] = []
    dss.Circuit.SetActiveClass("Line")
    idx = dss.ActiveClass.First()
    while idx > 0:
        name = dss.CktElement.Name().split(".", 1)[1].lower()
        dss.Lines.Name(name)  # make the Lines interface point at the class iterator's element
        n_phases = dss.CktElement.NumPhases()
        n_cond = dss.CktElement.NumConductors()
        bus_specs = dss.CktElement.BusNames()
        bus1, nodes1 = _parse_bus(bus_specs[0], n_phases)
        bus2, nodes2 = _parse_bus(bus_specs[1], n_phases)
        phases1, phases2 = _phase_nodes(nodes1, n_phases), _phase_nodes(nodes2, n_phases)
        enabled = bool(dss.CktElement.Enabled())
        norm_amps = float(dss.CktElement.NormalAmps()) or float("inf")
        is_switch = bool(dss.Lines.IsSwitch())
        is_open = enabled and (dss.CktElement.IsOpen(1, 0) or dss.CktElement.IsOpen(2, 0))
        if is_switch or not enabled or is_open:
            closed = enabled and not is_open
            if not is_switch:
                # a disabled line, or one opened by a command or a protective device
                disabled_as_open.append(name)
            switches.append(Switch(name, bus1, bus2, phases1, phases2, closed, norm_amps))
        else:
            yprim = np.asarray(dss.CktElement.YPrim(), dtype=float)
            yc = (yprim[0::2] + 1j * yprim[1::2]).reshape(2 * n_cond, 2 * n_cond)
            try:
                z = _series_impedance(yc, n_cond, n_phases)
            except np.linalg.LinAlgError as exc:
                raise FeederInputError(
                    f"Line.{name}: its series admittance matrix is singular (zero length or "
                    "zero impedance?); expected a non-zero impedance or switch=yes"
                ) from exc
            y_shunt = 2.0 * (yc[:n_cond, :n_cond] + yc[:n_cond, n_cond:])[:n_phases, :n_phases]
            lines.append(
                Line(
                    name=name,
                    bus1=bus1,
                    bus2=bus2,
                    phases1=phases1,
                    phases2=phases2,
                    z_ohm=z,
                    y_shunt_siemens=y_shunt,
                    norm_amps=norm_amps,
                    emerg_amps=float(dss.CktElement.EmergAmps()) or float("inf"),
                    length_km=_length_km(),
                )
            )
        idx = dss.ActiveClass.Next()
    return lines, switches, disabled_as_open


#: OpenDSS length units (``Lines.Units``) to km: none, mi, kft, km, m, ft, in, cm, mm.
SERIES_REACTOR_PREFIX = "reactor_"


def _read_series_reactors() -> tuple[list[Line], list[str]]:
    """Two-terminal reactors become series :class:`Line` objects named ``reactor_<name>``.

    Shunt reactors (no second bus) are returned by name: they are not modeled.
    """
    lines: list[Line] = []
    shunt: list[str] = []
    dss.Circuit.SetActiveClass("Reactor")
    idx = dss.ActiveClass.First()
    while idx > 0:
        name = dss.CktElement.Name().split(".", 1)[1].lower()
        n_phases = dss.CktElement.NumPhases()
        n_cond = dss.CktElement.NumConductors()
        specs = dss.CktElement.BusNames()
        if dss.CktElement.NumTerminals() < 2 or not dss.CktElement.Enabled():
            shunt.append(name)
            idx = dss.ActiveClass.Next()
            continue
        bus1, nodes1 = _parse_bus(specs[0], n_phases)
        bus2, nodes2 = _parse_bus(specs[1], n_phases)
        if bus2 == bus1 or all(n == 0 for n in nodes2[:n_phases]):
            shunt.append(name)
            idx = dss.ActiveClass.Next()
            continue
        yprim = np.asarray(dss.CktElement.YPrim(), dtype=float)
        yc = (yprim[0::2] + 1j * yprim[1::2]).reshape(2 * n_cond, 2 * n_cond)
        lines.append(
            Line(
                name=SERIES_REACTOR_PREFIX + name,
                bus1=bus1,
                bus2=bus2,
                phases1=_phase_nodes(nodes1, n_phases),
                phases2=_phase_nodes(nodes2, n_phases),
                z_ohm=_series_impedance(yc, n_cond, n_phases),
                y_shunt_siemens=np.zeros((n_phases, n_phases), dtype=complex),
                norm_amps=float(dss.CktElement.NormalAmps()) or float("inf"),
            )
        )
        idx = dss.ActiveClass.Next()
    return lines, shunt


_UNIT_TO_KM = {
    0: 0.0,
    1: 1.609344,
    2: 0.3048,
    3: 1.0,
    4: 1e-3,
    5: 0.3048e-3,
    6: 0.0254e-3,
    7: 1e-5,
    8: 1e-6,
}


def _length_km() -> float:
    """Line length in km; a unitless line takes the units of its linecode (as OpenDSS does)."""
    units = int(dss.Lines.Units())
    code = dss.Lines.LineCode()
    length = float(dss.Lines.Length())
    if units == 0 and code:
        dss.LineCodes.Name(code)
        units = int(dss.LineCodes.Units())
    return length * _UNIT_TO_KM.get(units, 0.0)


def _read_transformers() -> tuple[list[Transformer], list[str]]:
    transformers: list[Transformer] = []
    skipped: list[str] = []
    dss.Circuit.SetActiveClass("Transformer")
    idx = dss.ActiveClass.First()
    while idx > 0:
        name = dss.CktElement.Name().split(".", 1)[1].lower()
        if not dss.CktElement.Enabled():
            skipped.append(f"Transformer.{name}")
            idx = dss.ActiveClass.Next()
            continue
        dss.Transformers.Name(name)
        n_phases = dss.CktElement.NumPhases()
        n_windings = dss.Transformers.NumWindings()
        windings = []
        for w, spec in enumerate(dss.CktElement.BusNames()[:n_windings], start=1):
            dss.Transformers.Wdg(w)
            is_delta = bool(dss.Transformers.IsDelta())
            bus, nodes = _parse_bus(spec, n_phases)
            # a single-phase winding connected between two phases (delta, or wye on bus.x.y as
            # in line-to-line regulators): both nodes are its terminals
            line_to_line = (
                n_phases == 1
                and len(nodes) > 1
                and 1 <= nodes[0] <= 3
                and 1 <= nodes[1] <= 3
                and nodes[0] != nodes[1]
            )
            n_terminal_phases = 2 if (is_delta or line_to_line) and n_phases == 1 else n_phases
            phases = _phase_nodes(nodes, n_terminal_phases)
            windings.append(
                Winding(
                    bus=bus,
                    phases=phases,
                    connection=Connection.DELTA if is_delta else Connection.WYE,
                    kv=float(dss.Transformers.kV()),
                    kva=float(dss.Transformers.kVA()),
                    r_pct=float(dss.Transformers.R()),
                    tap=float(dss.Transformers.Tap()),
                )
            )
        x_pct = (
            (float(dss.Transformers.Xhl()),)
            if n_windings == 2
            else (
                float(dss.Transformers.Xhl()),
                float(dss.Transformers.Xht()),
                float(dss.Transformers.Xlt()),
            )
        )
        transformers.append(Transformer(name, n_phases, tuple(windings), x_pct))
        idx = dss.ActiveClass.Next()
    return transformers, skipped


def _read_regulators() -> list[Regulator]:
    regulators = []
    idx = dss.RegControls.First()
    while idx > 0:
        xf = dss.RegControls.Transformer().lower()
        winding = int(dss.RegControls.Winding())
        name = dss.RegControls.Name().lower()
        vreg = float(dss.RegControls.ForwardVreg())
        band = float(dss.RegControls.ForwardBand())
        pt = float(dss.RegControls.PTRatio())
        enabled = bool(dss.CktElement.Enabled())
        dss.Transformers.Name(xf)
        dss.Transformers.Wdg(winding)
        regulators.append(
            Regulator(
                name=name,
                transformer=xf,
                winding=winding,
                tap_min=float(dss.Transformers.MinTap()),
                tap_max=float(dss.Transformers.MaxTap()),
                n_steps=int(dss.Transformers.NumTaps()),
                vreg=vreg,
                band=band,
                pt_ratio=pt,
                enabled=enabled,
            )
        )
        idx = dss.RegControls.Next()
    return regulators


def _shunt_common() -> tuple[str, str, tuple[int, ...], int]:
    name = dss.CktElement.Name().split(".", 1)[1].lower()
    n_phases = dss.CktElement.NumPhases()
    bus, nodes = _parse_bus(dss.CktElement.BusNames()[0], n_phases)
    return name, bus, nodes, n_phases


def _shunt_phases(nodes: tuple[int, ...], n_phases: int, is_delta: bool) -> tuple[int, ...]:
    """Phase nodes of a shunt element; a 1-phase delta element spans two nodes."""
    count = 2 if (is_delta and n_phases == 1) else n_phases
    phases = _phase_nodes(nodes, count)
    # A 1-phase wye element between two phase nodes (e.g. bus.1.2) is a phase-to-phase element.
    if not is_delta and n_phases == 1 and len(nodes) >= 2 and nodes[1] != 0:
        phases = tuple(n for n in nodes[:2] if n != 0)
    return phases


def _connection(is_delta: bool, phases: tuple[int, ...], n_phases: int) -> Connection:
    if is_delta or (n_phases == 1 and len(phases) == 2):
        return Connection.DELTA
    return Connection.WYE


def _powers_kw_kvar() -> tuple[float, float]:
    """Total P, Q drawn by the active element at its first terminal (kW, kvar)."""
    s = np.asarray(dss.CktElement.Powers(), dtype=float)
    n = dss.CktElement.NumConductors()
    return float(np.sum(s[0 : 2 * n : 2])), float(np.sum(s[1 : 2 * n : 2]))


@dataclass
class _ShuntElements:
    """Shunt elements read from the compiled circuit."""

    capacitors: list[Capacitor] = field(default_factory=list)
    loads: list[Load] = field(default_factory=list)
    pv_systems: list[PVSystem] = field(default_factory=list)
    generators: list[Generator] = field(default_factory=list)
    storage: list[Storage] = field(default_factory=list)
    skipped_disabled: list[str] = field(default_factory=list)


def _read_shunts() -> _ShuntElements:
    out = _ShuntElements()
    skipped = out.skipped_disabled

    idx = dss.Capacitors.First()
    while idx > 0:
        name, bus, nodes, n_ph = _shunt_common()
        is_delta = bool(dss.Capacitors.IsDelta())
        phases = _shunt_phases(nodes, n_ph, is_delta)
        states = list(dss.Capacitors.States())
        out.capacitors.append(
            Capacitor(
                name=name,
                bus=bus,
                phases=phases,
                connection=_connection(is_delta, phases, n_ph),
                kvar=float(dss.Capacitors.kvar()),
                kv=float(dss.Capacitors.kV()),
                steps_closed=float(np.mean(states)) if states else 1.0,
            )
        )
        idx = dss.Capacitors.Next()

    dss.Circuit.SetActiveClass("Load")
    idx = dss.ActiveClass.First()
    while idx > 0:
        name, bus, nodes, n_ph = _shunt_common()
        if not dss.CktElement.Enabled():
            skipped.append(f"Load.{name}")
            idx = dss.ActiveClass.Next()
            continue
        dss.Loads.Name(name)
        is_delta = bool(dss.Loads.IsDelta())
        phases = _shunt_phases(nodes, n_ph, is_delta)
        out.loads.append(
            Load(
                name=name,
                bus=bus,
                phases=phases,
                connection=_connection(is_delta, phases, n_ph),
                kw=float(dss.Loads.kW()),
                kvar=float(dss.Loads.kvar()),
                kv=float(dss.Loads.kV()),
                model=int(dss.Loads.Model()),
                zipv=tuple(float(z) for z in dss.Loads.ZipV()),
            )
        )
        idx = dss.ActiveClass.Next()

    idx = dss.PVsystems.First()
    while idx > 0:
        name, bus, nodes, n_ph = _shunt_common()
        phases = _shunt_phases(nodes, n_ph, False)
        p, q = _powers_kw_kvar()
        out.pv_systems.append(
            PVSystem(
                name=name,
                bus=bus,
                phases=phases,
                connection=_connection(False, phases, n_ph),
                kva=float(dss.PVsystems.kVARated()),
                pmpp_kw=float(dss.PVsystems.Pmpp()),
                p_kw=-p,
                q_kvar=-q,
                kv=float(_element_prop(f"PVSystem.{name}", "kv")),
            )
        )
        idx = dss.PVsystems.Next()

    idx = dss.Generators.First()
    while idx > 0:
        name, bus, nodes, n_ph = _shunt_common()
        is_delta = bool(dss.Generators.IsDelta())
        phases = _shunt_phases(nodes, n_ph, is_delta)
        p, q = _powers_kw_kvar()
        out.generators.append(
            Generator(
                name=name,
                bus=bus,
                phases=phases,
                connection=_connection(is_delta, phases, n_ph),
                kw=-p,
                kvar=-q,
                kva=float(dss.Generators.kva()),
                kv=float(dss.Generators.kV()),
            )
        )
        idx = dss.Generators.Next()

    idx = dss.Storages.First()
    while idx > 0:
        name, bus, nodes, n_ph = _shunt_common()
        full = f"Storage.{name}"
        phases = _shunt_phases(nodes, n_ph, False)
        p, q = _powers_kw_kvar()
        out.storage.append(
            Storage(
                name=name,
                bus=bus,
                phases=phases,
                connection=_connection(False, phases, n_ph),
                kw_rated=float(_element_prop(full, "kWrated")),
                kwh_rated=float(_element_prop(full, "kWhrated")),
                kva=float(_element_prop(full, "kVA")),
                kw=-p,
                kvar=-q,
                kv=float(_element_prop(full, "kv")),
                soc_pct=float(_element_prop(full, "%stored")),
            )
        )
        idx = dss.Storages.Next()
    for load in out.loads:
        if not (np.isfinite(load.kw) and np.isfinite(load.kvar)):
            raise FeederInputError(
                f"Load.{load.name}: kW={load.kw}, kvar={load.kvar}; expected finite numbers"
            )
    return out


def _read_roots() -> tuple[Root, ...]:
    roots = []
    idx = dss.Vsources.First()
    while idx > 0:
        n_phases = dss.CktElement.NumPhases()
        bus, nodes = _parse_bus(dss.CktElement.BusNames()[0], n_phases)
        phases = _phase_nodes(nodes, n_phases)
        pu = float(dss.Vsources.PU())
        angle = float(dss.Vsources.AngleDeg())
        shifts = {1: 0.0, 2: -120.0, 3: 120.0}
        roots.append(
            Root(
                bus=bus,
                v_pu=tuple(pu for _ in phases),
                angle_deg=tuple(angle + shifts[p] for p in phases),
            )
        )
        idx = dss.Vsources.Next()
    return tuple(roots)


def _classify_elements() -> tuple[dict[str, int], dict[str, int]]:
    counts = Counter(e.split(".", 1)[0] for e in dss.Circuit.AllElementNames())
    unsupported = {
        cls: n
        for cls, n in counts.items()
        if cls not in MODELED_CLASSES and cls not in MEASUREMENT_CLASSES
    }
    return dict(counts), unsupported


def read_compiled_circuit(master: Path, converged: bool) -> tuple[Feeder, OpenDSSImportReport]:
    """Read the circuit currently compiled in the OpenDSS engine into a :class:`Feeder`."""
    buses = _read_buses()
    zero_base = [b.name for b in buses if b.kv_base_ln <= 0]
    if zero_base:
        dss.Text.Command("CalcVoltageBases")
        buses = _read_buses()
        zero_base = [b.name for b in buses if b.kv_base_ln <= 0]
        if zero_base:
            raise FeederInputError(
                f"{master}: no voltage base for buses {zero_base[:10]}; add "
                "'Set VoltageBases=[...]' and 'CalcVoltageBases' to the master"
            )
    lines, switches, disabled_as_open = _read_lines()
    reactors, shunt_reactors = _read_series_reactors()
    lines += reactors
    transformers, skipped_xf = _read_transformers()
    regulators = _read_regulators()
    shunts = _read_shunts()
    counts, unsupported = _classify_elements()
    unsupported.pop("Reactor", None)
    if shunt_reactors:
        unsupported["Reactor (shunt)"] = len(shunt_reactors)
    if unsupported:
        listed = ", ".join(f"{n} {cls}" for cls, n in sorted(unsupported.items()))
        warnings.warn(
            f"{master.name}: elements not modeled by gridrecourse (ignored): {listed}",
            UserWarning,
            stacklevel=3,
        )
    bus_names = {b.name for b in buses}
    dangling = [sw for sw in switches if not sw.closed and not {sw.bus1, sw.bus2} <= bus_names]
    if dangling:
        # a disabled line to a bus only it names: OpenDSS never creates that bus
        switches = [sw for sw in switches if sw not in dangling]
    feeder = Feeder(
        name=dss.Circuit.Name(),
        buses=buses,
        roots=_read_roots(),
        lines=tuple(lines),
        switches=tuple(switches),
        transformers=tuple(transformers),
        regulators=tuple(regulators),
        capacitors=tuple(shunts.capacitors),
        loads=tuple(shunts.loads),
        pv_systems=tuple(shunts.pv_systems),
        generators=tuple(shunts.generators),
        storage=tuple(shunts.storage),
        source_path=str(master),
        source_kind="opendss",
        frequency_hz=float(dss.Solution.Frequency()),
    )
    neutral_only = int(dss.Circuit.NumBuses()) - len(buses)
    if neutral_only > 0:
        feeder = _with_reduction(
            feeder,
            f"left out {neutral_only} bus(es) with no phase node (neutral or ground points only)",
        )
    feeder = merge_parallel_branches(_phases_fed_by_branches(feeder))
    feeder = _bases_from_transformer_ratings(feeder)
    feeder = cut_parallel_banks(feeder, _transformer_powers_kva())
    if dangling:
        feeder = _with_reduction(
            feeder,
            f"dropped {len(dangling)} open/disabled line(s) to buses that are not in the "
            f"compiled circuit: {[sw.name for sw in dangling][:10]}",
            n_branches_removed=len(dangling),
        )
    check_feeder_elements(feeder, str(master))
    report = OpenDSSImportReport(
        master=str(master),
        converged=converged,
        element_counts=counts,
        unsupported=unsupported,
        disabled_lines_as_open_switches=tuple(disabled_as_open),
        skipped_disabled=tuple(skipped_xf + shunts.skipped_disabled),
    )
    return feeder, report


def _transformer_powers_kva() -> dict[str, float]:
    """``{transformer: |S| at its first terminal (kVA)}`` of the solved snapshot."""
    out: dict[str, float] = {}
    idx = dss.Transformers.First()
    while idx > 0:
        s = np.asarray(dss.CktElement.Powers(), dtype=float)
        n = dss.CktElement.NumConductors()
        out[dss.Transformers.Name().lower()] = float(
            abs(complex(s[0 : 2 * n : 2].sum(), s[1 : 2 * n : 2].sum()))
        )
        idx = dss.Transformers.Next()
    return out


#: A bus base this far from the rated winding voltage feeding its network is a wrong base.
BASE_MISMATCH = 0.25


def _bases_from_transformer_ratings(feeder: Feeder) -> Feeder:
    """Correct voltage bases that contradict the transformer ratings feeding the network.

    OpenDSS's ``CalcVoltageBases`` picks, per bus, the closest of the script's voltage bases
    to the solved voltage; on a floating (ungrounded, open-delta) secondary the node-to-ground
    voltages can pick the wrong one. Every network between transformers (buses joined by
    lines and switches) whose windings all agree on one rated line-to-neutral voltage gets
    that base when OpenDSS's differs from it by more than :data:`BASE_MISMATCH`. Counted in
    ``feeder.reductions``.
    """
    from gridrecourse.network.reduce import _components_without_transformers

    labels, index = _components_without_transformers(feeder)
    rated: dict[int, list[float]] = {}
    for xf in feeder.transformers:
        for k, w in enumerate(xf.windings):
            if xf.is_center_tapped and k:
                continue
            three_wire = xf.n_phases > 1 or w.connection is Connection.DELTA
            kv_ln = w.kv / np.sqrt(3.0) if three_wire or len(w.phases) > 1 else w.kv
            rated.setdefault(int(labels[index[w.bus]]), []).append(kv_ln)
    fixed: dict[str, float] = {}
    for label, values in rated.items():
        ref = float(np.median(values))
        if not np.allclose(values, ref, rtol=0.05):
            continue
        members = [b for b in feeder.buses if labels[index[b.name]] == label]
        if any(abs(b.kv_base_ln / ref - 1.0) > BASE_MISMATCH for b in members if b.kv_base_ln):
            fixed.update({b.name: ref for b in members})
    if not fixed:
        return feeder
    buses = tuple(replace(b, kv_base_ln=fixed.get(b.name, b.kv_base_ln)) for b in feeder.buses)
    out = replace(feeder, buses=buses)
    return _with_reduction(
        out,
        f"voltage base of {len(fixed)} bus(es) set from the transformer ratings feeding them "
        f"(OpenDSS's base differed by more than {BASE_MISMATCH:.0%}): {sorted(fixed)[:10]}",
        before=feeder,
    )


def _with_reduction(
    feeder: Feeder, description: str, *, n_branches_removed: int = 0, before: Feeder | None = None
) -> Feeder:
    """Append an import simplification to ``feeder.reductions`` (counts before/after)."""
    ref = before or feeder
    report = ReductionReport(
        description=description,
        buses_before=ref.n_buses,
        buses_after=feeder.n_buses,
        nodes_before=ref.n_nodes,
        nodes_after=feeder.n_nodes,
        branches_before=ref.n_branches + n_branches_removed,
        branches_after=feeder.n_branches,
    )
    return replace(feeder, reductions=(*feeder.reductions, report))


def _phases_fed_by_branches(feeder: Feeder) -> Feeder:
    """Bus phases are those a branch (line, switch, transformer) or a source connects.

    OpenDSS creates a bus node for any element that names it, so a load on ``bus.2`` of a bus
    whose lines carry only phase 1 would make a floating phase 2; here that phase is not a
    phase of the bus, and :func:`check_feeder_elements` names the load.
    """
    fed: dict[str, set[int]] = {b.name: set() for b in feeder.buses}

    def add(bus: str, phases) -> None:
        if bus in fed:
            fed[bus].update(phases)

    for br in (*feeder.lines, *feeder.switches):
        add(br.bus1, br.phases1)
        add(br.bus2, br.phases2)
    bus_phases = {b.name: b.phases for b in feeder.buses}
    for xf in feeder.transformers:
        for k, w in enumerate(xf.windings):
            # a split-phase secondary (windings 2 and 3 on nodes 1.0 / 0.2) feeds both nodes
            add(w.bus, bus_phases.get(w.bus, ()) if xf.is_center_tapped and k else w.phases)
    for root in feeder.roots:
        add(root.bus, bus_phases.get(root.bus, ()))
    buses = tuple(
        b
        if set(b.phases) <= fed[b.name]
        else replace(b, phases=tuple(sorted(set(b.phases) & fed[b.name])))
        for b in feeder.buses
    )
    return replace(feeder, buses=buses)


def feeder_from_opendss(
    path: str | Path, *, solve: bool = True, require_convergence: bool = True
) -> Feeder:
    """Import an OpenDSS circuit.

    Parameters
    ----------
    path : str or Path
        The master ``.dss`` file (compiled from its own folder, as OpenDSS does).
    solve : bool
        Solve the snapshot first so regulator taps, capacitor states and DER output are those
        of OpenDSS's controlled solution.
    require_convergence : bool
        Raise if the snapshot does not converge.

    Returns
    -------
    Feeder
        The feeder as compiled, with ``source_kind="opendss"``.
    """
    master, converged = compile_opendss(path, solve=solve)
    if solve and require_convergence and not converged:
        raise FeederInputError(
            f"{master}: the OpenDSS snapshot power flow did not converge within "
            f"{DEFAULT_MAX_ITERATIONS} iterations; check the circuit or pass solve=False"
        )
    feeder, _ = read_compiled_circuit(master, converged)
    return feeder
