"""Write a :class:`~gridrecourse.network.components.Feeder` as a self-contained OpenDSS script.

This lets OpenDSS run the AC power flow of feeders that did not come from OpenDSS (pandapower
cases, JSON files, reduced feeders). The script is one file with no redirects; compile it with
``Compile "<path>"`` or ``Redirect "<path>"`` and ``Solve``.

What is written
---------------
* **Roots**: the first root is the circuit's source (``New Circuit``), further roots are extra
  ``Vsource`` elements. A balanced 3-phase root is one 3-phase ``Vsource`` (``basekv`` line to
  line, ``pu``, ``angle`` of phase 1); any other root gets one 1-phase ``Vsource`` per phase
  with its own magnitude and angle. Sources are ``model=ideal`` with a negligible internal
  impedance (:data:`IDEAL_SOURCE_PUZ`), so the root voltages are the ones of the feeder.
* **Lines**: explicit ``rmatrix``/``xmatrix`` (ohm, lower triangle, which OpenDSS reads for
  both the triangular and the full form) and ``cmatrix`` (nF, from ``Im(y_shunt) / ω``) at
  ``length=1 units=none``, so the matrices are the totals of :attr:`Line.z_ohm`. OpenDSS lines
  have no shunt conductance: a non-zero ``Re(y_shunt)`` is dropped with a warning. Matrices
  must be symmetric (the mean of ``Z`` and ``Zᵀ`` is written; a warning is issued if they
  differ).
* **Switches**: ``Line ... switch=yes`` (OpenDSS's (1 + 1j) mΩ switch); open switches are opened at
  terminal 1 with ``Open Line.<name> 1`` after the definitions, so they stay in the circuit and
  can be closed again (``Close Line.<name> 1``).
* **Transformers**: per-winding ``bus``/``conn``/``kv``/``kva``/``%r``/``tap`` with ``xhl``
  (and ``xht``/``xlt`` for three windings), no-load losses and magnetizing current zero.
  Wye windings are solidly grounded (node 0); a 1-phase wye winding on node p is ``bus.p.0``
  and the second secondary half of a centre-tapped transformer is ``bus.0.2`` (or
  ``bus.0.<node>`` when the winding lists one). A regulated winding gets the regulator's
  ``mintap``/``maxtap``/``numtaps`` and a ``RegControl`` (taps move only if the script is
  solved with controls active; use ``Set ControlMode=off`` to keep the feeder's taps).
* **Capacitors** with their closed steps (a fraction ``steps_closed`` becomes equal steps with
  that share closed), **loads** (``model``, ``conn``, ``kV``, ``kW``,
  ``kvar``, ``zipv``), **PV systems** as ``PVSystem`` elements pinned to the feeder's P and Q
  (``irradiance=1``, ``%Pmpp = 100·p_kw/pmpp_kw``, fixed ``kvar``, no cut-in/cut-out, ``kVA``
  at least the apparent power so nothing is curtailed; ``Pmpp`` is raised to ``p_kw`` if
  below it), **generators** as ``Generator``
  ``model=1`` (constant kW and kvar) and **storage** as ``Storage`` dispatched at fixed
  ``kW``/``kvar`` (``%reserve=0`` so the dispatch is not cut by the reserve).
* Constant-power elements keep their model down to :data:`VMIN_PU` (OpenDSS's default
  ``vminpu=0.95`` would turn them into constant impedance below 0.95 p.u.) and up to
  :data:`VMAX_PU`.
* ``Set VoltageBases`` (line-to-line kV of every bus base) and ``CalcVoltageBases``, then
  ``SetkVBase`` per bus so every bus keeps exactly :attr:`Bus.kv_base_ln`, and ``SetBusXY``
  for buses with coordinates. Buses no element connects to do not exist in OpenDSS and are
  left out. Infinite ampacities are written as ``normamps=0`` (no rating).

Names are made safe for OpenDSS by :func:`dss_name` (characters other than letters, digits,
``_`` and ``-`` become ``_``); a name that collides case-insensitively within its OpenDSS
class gets a ``_2``, ``_3``... suffix. Names that are already safe are kept (OpenDSS lower-cases
them), so decisions can address elements by their feeder names.

``Set DefaultBaseFrequency`` is written at the top of the script; OpenDSS keeps this setting
across ``Clear``, so a caller compiling a 60 Hz script without its own frequency setting after
a 50 Hz feeder must set it back.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from gridrecourse.errors import FeederInputError
from gridrecourse.network.components import (
    Capacitor,
    Connection,
    Feeder,
    Generator,
    Line,
    Load,
    LoadModel,
    PVSystem,
    Root,
    Storage,
    Switch,
    Transformer,
)

DEFAULT_MASTER_NAME = "master.dss"
#: Voltage range (p.u.) over which loads and DER keep their power model.
VMIN_PU = 0.5
VMAX_PU = 1.5
#: Internal impedance (p.u. on the source's base MVA) of the ideal root sources.
IDEAL_SOURCE_PUZ = (1e-8, 1e-7)
#: Smallest rating (kVA, kW, kWh) written, OpenDSS rejects zero ratings of DER.
MIN_RATING = 1e-6
#: Relative asymmetry of a line matrix above which a warning is issued.
SYMMETRY_RTOL = 1e-6
#: Shunt conductance (S) below which it is treated as zero.
G_SHUNT_ATOL = 1e-12
SQRT3 = math.sqrt(3.0)
PHASE_SHIFT_DEG: dict[int, float] = {1: 0.0, 2: -120.0, 3: 120.0}
ANGLE_ATOL_DEG = 1e-9
VPU_ATOL = 1e-12
#: Steps tried when a capacitor has a fractional number of closed steps.
MAX_CAPACITOR_STEPS = 1000
#: Node of the second half of a centre-tapped secondary whose winding lists no phase.
CENTER_TAP_SECOND_NODE = 2
CONN_KEYWORD = {Connection.WYE: "wye", Connection.DELTA: "delta"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")

# OpenDSS class names.
CLS_LINE = "Line"
CLS_TRANSFORMER = "Transformer"
CLS_REGCONTROL = "RegControl"
CLS_CAPACITOR = "Capacitor"
CLS_LOAD = "Load"
CLS_PV = "PVSystem"
CLS_GENERATOR = "Generator"
CLS_STORAGE = "Storage"
CLS_VSOURCE = "Vsource"
CLS_BUS = "Bus"


def _f(value: float) -> str:
    """A float in its shortest round-trip form, so OpenDSS reads back the same double."""
    return repr(float(value))


def _array(values: Iterable[float]) -> str:
    return "[" + " ".join(_f(v) for v in values) + "]"


def dss_name(name: str) -> str:
    """Make ``name`` safe as an OpenDSS bus or element name.

    Characters other than ASCII letters, digits, ``_`` and ``-`` become ``_``; an empty name
    becomes ``_``. The result is not lower-cased (OpenDSS does that itself).
    """
    safe = _UNSAFE.sub("_", str(name))
    return safe or "_"


class _Namer:
    """Unique, safe OpenDSS names per class (case-insensitive, as OpenDSS compares them)."""

    def __init__(self) -> None:
        self._maps: dict[str, dict[str, str]] = {}
        self._taken: dict[str, set[str]] = {}

    def __call__(self, cls: str, name: str) -> str:
        """A new unique name for element ``name`` of OpenDSS class ``cls``.

        The first element called ``name`` is remembered for :meth:`lookup`.
        """
        taken = self._taken.setdefault(cls, set())
        base = dss_name(name)
        candidate, k = base, 1
        while candidate.lower() in taken:
            k += 1
            candidate = f"{base}_{k}"
        taken.add(candidate.lower())
        self._maps.setdefault(cls, {}).setdefault(name, candidate)
        return candidate

    def lookup(self, cls: str, name: str) -> str:
        """The name already given to ``name`` (raises ``KeyError`` if none)."""
        return self._maps[cls][name]


def _nodes(bus: str, nodes: Sequence[int]) -> str:
    return bus + "".join(f".{n}" for n in nodes)


def _shunt_terminal(
    kind: str, name: str, bus: str, phases: tuple[int, ...], connection: Connection
) -> tuple[str, int, str]:
    """Bus spec, ``phases=`` value and ``conn=`` keyword of a shunt element.

    WYE on n phases: n-phase wye (neutral grounded). DELTA on 2 phases: a 1-phase element
    between them; DELTA on 3 phases: 3-phase delta.
    """
    if not phases:
        raise FeederInputError(f"{kind} {name!r} has no phases; cannot write it to OpenDSS")
    if connection == Connection.WYE:
        return _nodes(bus, phases), len(phases), CONN_KEYWORD[Connection.WYE]
    if len(phases) == 2:
        return _nodes(bus, phases), 1, CONN_KEYWORD[Connection.DELTA]
    if len(phases) == 3:
        return _nodes(bus, phases), 3, CONN_KEYWORD[Connection.DELTA]
    raise FeederInputError(f"{kind} {name!r}: a delta connection needs 2 or 3 phases, got {phases}")


def _lower_triangle(matrix: np.ndarray) -> str:
    n = matrix.shape[0]
    rows = [" ".join(_f(matrix[i, j]) for j in range(i + 1)) for i in range(n)]
    return "[" + " | ".join(rows) + "]"


def _symmetric(matrix: np.ndarray, what: str, notes: list[str]) -> np.ndarray:
    m = np.asarray(matrix, dtype=complex)
    scale = max(float(np.max(np.abs(m))), 1e-300) if m.size else 1.0
    if m.size and float(np.max(np.abs(m - m.T))) > SYMMETRY_RTOL * scale:
        notes.append(f"{what} is not symmetric; its symmetric part was written")
    return 0.5 * (m + m.T)


class _Writer:
    def __init__(self, feeder: Feeder):
        self.feeder = feeder
        self.names = _Namer()
        self.notes: list[str] = []
        self.lines: list[str] = []
        self.used_buses: dict[str, str] = {}  # feeder bus name -> DSS bus name
        self.open_switch_names: list[str] = []
        self.omega = 2.0 * math.pi * feeder.frequency_hz
        self.bus_by_name = {b.name: b for b in feeder.buses}

    # -- helpers ---------------------------------------------------------------------------
    def bus(self, name: str, context: str) -> str:
        if name not in self.bus_by_name:
            raise FeederInputError(
                f"feeder {self.feeder.name!r}: {context} refers to bus {name!r}, which is not in "
                "feeder.buses"
            )
        if name not in self.used_buses:
            self.used_buses[name] = self.names(CLS_BUS, name)
        return self.used_buses[name]

    def emit(self, text: str = "") -> None:
        self.lines.append(text)

    # -- sections --------------------------------------------------------------------------
    def header(self) -> None:
        f = self.feeder
        self.emit(f"! gridrecourse feeder {dss_name(f.name)} (source: {f.source_kind})")
        self.emit("! written by gridrecourse.network.io_dss_writer; units: kV, kW, kvar, ohm, nF")
        self.emit("Clear")
        self.emit(f"Set DefaultBaseFrequency={_f(f.frequency_hz)}")

    def roots(self) -> None:
        f = self.feeder
        if not f.roots:
            raise FeederInputError(f"feeder {f.name!r} has no root (voltage source)")
        first = True
        for k, root in enumerate(f.roots):
            for i, spec in enumerate(self._root_sources(root, k)):
                if first:
                    self.emit(f"New Circuit.{dss_name(f.name)} {spec}")
                    first = False
                else:
                    vs_name = self.names(CLS_VSOURCE, f"root{k}_{i}_{root.bus}")
                    self.emit(f"New Vsource.{vs_name} {spec}")

    def _root_sources(self, root: Root, k: int) -> list[str]:
        bus_obj = self.bus_by_name.get(root.bus)
        if bus_obj is None:
            raise FeederInputError(
                f"feeder {self.feeder.name!r}: root {k} is at bus {root.bus!r}, not in buses"
            )
        bus = self.bus(root.bus, f"root {k}")
        phases = bus_obj.phases
        if len(root.v_pu) != len(phases) or len(root.angle_deg) < len(phases):
            raise FeederInputError(
                f"feeder {self.feeder.name!r}: root at {root.bus!r} has {len(root.v_pu)} "
                f"voltages for the {len(phases)} phases {phases} of its bus"
            )
        ideal = f"model=ideal puZideal={_array(IDEAL_SOURCE_PUZ)}"
        angles = root.angle_deg[: len(phases)]
        balanced = (
            phases == (1, 2, 3)
            and max(root.v_pu) - min(root.v_pu) <= VPU_ATOL
            and all(
                abs(_wrap(a - angles[0] - PHASE_SHIFT_DEG[p])) <= ANGLE_ATOL_DEG
                for a, p in zip(angles, phases, strict=True)
            )
        )
        if balanced:
            return [
                f"bus1={_nodes(bus, phases)} phases=3 basekv={_f(bus_obj.kv_base_ln * SQRT3)} "
                f"pu={_f(root.v_pu[0])} angle={_f(angles[0])} {ideal}"
            ]
        return [
            f"bus1={bus}.{p} phases=1 basekv={_f(bus_obj.kv_base_ln)} pu={_f(v)} "
            f"angle={_f(a)} {ideal}"
            for p, v, a in zip(phases, root.v_pu, angles, strict=False)
        ]

    def line(self, line: Line) -> None:
        name = self.names(CLS_LINE, line.name)
        n = len(line.phases1)
        if len(line.phases2) != n or line.z_ohm.shape != (n, n):
            raise FeederInputError(
                f"line {line.name!r}: phases1 {line.phases1}, phases2 {line.phases2} and z_ohm "
                f"shape {line.z_ohm.shape} do not match"
            )
        z = _symmetric(line.z_ohm, f"line {line.name} z_ohm", self.notes)
        y = np.asarray(line.y_shunt_siemens, dtype=complex)
        if y.shape != (n, n):
            raise FeederInputError(
                f"line {line.name!r}: y_shunt_siemens has shape {y.shape}, expected {(n, n)}"
            )
        y = _symmetric(y, f"line {line.name} y_shunt_siemens", self.notes)
        if float(np.max(np.abs(y.real), initial=0.0)) > G_SHUNT_ATOL:
            self.notes.append(
                f"line {line.name}: shunt conductance dropped (OpenDSS lines have none)"
            )
        c_nf = y.imag / self.omega * 1e9
        bus1 = self.bus(line.bus1, f"line {line.name!r}")
        bus2 = self.bus(line.bus2, f"line {line.name!r}")
        self.emit(
            f"New Line.{name} bus1={_nodes(bus1, line.phases1)} bus2={_nodes(bus2, line.phases2)} "
            f"phases={n} length=1 units=none rmatrix={_lower_triangle(z.real)} "
            f"xmatrix={_lower_triangle(z.imag)} cmatrix={_lower_triangle(c_nf)} "
            f"{_amps(line.norm_amps, line.emerg_amps)}"
        )

    def switch(self, sw: Switch) -> None:
        name = self.names(CLS_LINE, sw.name)
        if not sw.closed:
            self.open_switch_names.append(name)
        n = len(sw.phases1)
        if n == 0 or len(sw.phases2) != n:
            raise FeederInputError(
                f"switch {sw.name!r}: phases1 {sw.phases1} and phases2 {sw.phases2} do not match"
            )
        bus1 = self.bus(sw.bus1, f"switch {sw.name!r}")
        bus2 = self.bus(sw.bus2, f"switch {sw.name!r}")
        self.emit(
            f"New Line.{name} bus1={_nodes(bus1, sw.phases1)} bus2={_nodes(bus2, sw.phases2)} "
            f"phases={n} switch=yes {_amps(sw.norm_amps, sw.norm_amps)}"
        )

    def transformer(self, xf: Transformer) -> None:
        name = self.names(CLS_TRANSFORMER, xf.name)
        n_w = len(xf.windings)
        if n_w not in (2, 3) or len(xf.x_pct) != (1 if n_w == 2 else 3):
            raise FeederInputError(
                f"transformer {xf.name!r}: {n_w} windings with x_pct {xf.x_pct}; expected 2 "
                "windings with (XHL,) or 3 with (XHL, XHT, XLT)"
            )
        regs = {r.winding: r for r in self.feeder.regulators if r.transformer == xf.name}
        parts = [f"New Transformer.{name} phases={xf.n_phases} windings={n_w}"]
        if n_w == 2:
            parts.append(f"xhl={_f(xf.x_pct[0])}")
        else:
            parts.append(f"xhl={_f(xf.x_pct[0])} xht={_f(xf.x_pct[1])} xlt={_f(xf.x_pct[2])}")
        parts.append("%noloadloss=0 %imag=0")
        for k, w in enumerate(xf.windings, start=1):
            spec = self._winding_bus(xf, k, w.phases, w.connection, w.bus)
            parts.append(
                f"wdg={k} bus={spec} conn={CONN_KEYWORD[Connection(w.connection)]} "
                f"kv={_f(w.kv)} kva={_f(w.kva)} %r={_f(w.r_pct)}"
            )
            reg = regs.get(k)
            if reg is not None:
                parts.append(
                    f"mintap={_f(reg.tap_min)} maxtap={_f(reg.tap_max)} numtaps={reg.n_steps}"
                )
            parts.append(f"tap={_f(w.tap)}")
        self.emit(" ".join(parts))

    def _winding_bus(
        self,
        xf: Transformer,
        k: int,
        phases: tuple[int, ...],
        connection: Connection,
        bus_name: str,
    ) -> str:
        bus = self.bus(bus_name, f"transformer {xf.name!r} winding {k}")
        if xf.n_phases == 1:
            if connection == Connection.DELTA or len(phases) == 2:
                if len(phases) != 2:
                    raise FeederInputError(
                        f"transformer {xf.name!r} winding {k}: a 1-phase delta winding needs 2 "
                        f"phase nodes, got {phases}"
                    )
                return _nodes(bus, phases)
            if xf.is_center_tapped and k == 3 and len(phases) <= 1:
                # second half of a split-phase secondary: reversed polarity, bus.0.<node>
                # (the OpenDSS importer drops node 0 and leaves no phase; node 2 is standard)
                return _nodes(bus, (0, phases[0] if phases else CENTER_TAP_SECOND_NODE))
            if len(phases) == 1:
                return _nodes(bus, (phases[0], 0))
            raise FeederInputError(
                f"transformer {xf.name!r} winding {k}: cannot place a 1-phase winding on phases "
                f"{phases}"
            )
        if len(phases) != xf.n_phases:
            raise FeederInputError(
                f"transformer {xf.name!r} winding {k}: {len(phases)} phase nodes for a "
                f"{xf.n_phases}-phase transformer"
            )
        return _nodes(bus, phases)

    def regulators(self) -> None:
        for reg in self.feeder.regulators:
            try:
                xf = self.names.lookup(CLS_TRANSFORMER, reg.transformer)
            except KeyError:
                raise FeederInputError(
                    f"regulator {reg.name!r} controls transformer {reg.transformer!r}, which is "
                    "not in the feeder"
                ) from None
            name = self.names(CLS_REGCONTROL, reg.name)
            self.emit(
                f"New RegControl.{name} transformer={xf} winding={reg.winding} "
                f"vreg={_f(reg.vreg)} band={_f(reg.band)} ptratio={_f(reg.pt_ratio)} "
                f"enabled={'yes' if reg.enabled else 'no'}"
            )

    def capacitor(self, cap: Capacitor) -> None:
        name = self.names(CLS_CAPACITOR, cap.name)
        bus = self.bus(cap.bus, f"capacitor {cap.name!r}")
        spec, n, conn = _shunt_terminal("capacitor", cap.name, bus, cap.phases, cap.connection)
        steps, closed = _capacitor_steps(cap.steps_closed)
        kvar = _array([cap.kvar / steps] * steps) if steps > 1 else _f(cap.kvar)
        states = "[" + " ".join("1" if i < closed else "0" for i in range(steps)) + "]"
        self.emit(
            # numsteps before kvar: setting it afterwards redistributes the first kvar value
            f"New Capacitor.{name} bus1={spec} phases={n} conn={conn} kv={_f(cap.kv)} "
            f"numsteps={steps} kvar={kvar} states={states}"
        )

    def load(self, load: Load) -> None:
        name = self.names(CLS_LOAD, load.name)
        bus = self.bus(load.bus, f"load {load.name!r}")
        spec, n, conn = _shunt_terminal("load", load.name, bus, load.phases, load.connection)
        model = int(load.model)
        text = (
            f"New Load.{name} bus1={spec} phases={n} conn={conn} kv={_f(load.kv)} "
            f"kw={_f(load.kw)} kvar={_f(load.kvar)} model={model} "
            f"vminpu={_f(VMIN_PU)} vmaxpu={_f(VMAX_PU)}"
        )
        if model == LoadModel.ZIP:
            if len(load.zipv) != 7:
                raise FeederInputError(
                    f"load {load.name!r}: model 8 (ZIP) needs 7 zipv values, got {load.zipv}"
                )
            text += f" zipv={_array(load.zipv)}"
        self.emit(text)

    def pv(self, pv: PVSystem) -> None:
        name = self.names(CLS_PV, pv.name)
        bus = self.bus(pv.bus, f"PV system {pv.name!r}")
        spec, n, conn = _shunt_terminal("PV system", pv.name, bus, pv.phases, pv.connection)
        if pv.p_kw < 0:
            raise FeederInputError(f"PV system {pv.name!r}: negative output p_kw={pv.p_kw}")
        pmpp = max(pv.pmpp_kw, 0.0)
        if pv.p_kw > pmpp:
            # OpenDSS caps the output at Pmpp·irradiance
            self.notes.append(f"PV system {pv.name}: p_kw above pmpp_kw, Pmpp written as p_kw")
            pmpp = pv.p_kw
        pct = 100.0 * pv.p_kw / pmpp if pmpp > 0 else 0.0
        apparent = math.hypot(pv.p_kw, pv.q_kvar)
        if apparent > pv.kva:
            self.notes.append(f"PV system {pv.name}: kVA raised to the apparent power of its P, Q")
        kva = max(pv.kva, apparent * (1.0 + 1e-9), MIN_RATING)
        self.emit(
            f"New PVSystem.{name} bus1={spec} phases={n} conn={conn} kv={_f(pv.kv)} "
            f"kva={_f(kva)} pmpp={_f(pmpp)} irradiance=1 %pmpp={_f(pct)} kvar={_f(pv.q_kvar)} "
            f"kvarmax={_f(kva)} kvarmaxabs={_f(kva)} %cutin=0 %cutout=0 model=1 "
            f"vminpu={_f(VMIN_PU)} vmaxpu={_f(VMAX_PU)}"
        )

    def generator(self, gen: Generator) -> None:
        name = self.names(CLS_GENERATOR, gen.name)
        bus = self.bus(gen.bus, f"generator {gen.name!r}")
        spec, n, conn = _shunt_terminal("generator", gen.name, bus, gen.phases, gen.connection)
        kva = max(gen.kva, math.hypot(gen.kw, gen.kvar), MIN_RATING)
        self.emit(
            f"New Generator.{name} bus1={spec} phases={n} conn={conn} kv={_f(gen.kv)} "
            f"kw={_f(gen.kw)} kvar={_f(gen.kvar)} kva={_f(kva)} model=1 "
            f"vminpu={_f(VMIN_PU)} vmaxpu={_f(VMAX_PU)}"
        )

    def storage(self, st: Storage) -> None:
        name = self.names(CLS_STORAGE, st.name)
        bus = self.bus(st.bus, f"storage {st.name!r}")
        spec, n, conn = _shunt_terminal("storage", st.name, bus, st.phases, st.connection)
        apparent = math.hypot(st.kw, st.kvar)
        if apparent > st.kva or abs(st.kw) > st.kw_rated:
            self.notes.append(f"storage {st.name}: ratings raised to its dispatch")
        kva = max(st.kva, apparent * (1.0 + 1e-9), MIN_RATING)
        kw_rated = max(st.kw_rated, abs(st.kw), MIN_RATING)
        self.emit(
            f"New Storage.{name} bus1={spec} phases={n} conn={conn} kv={_f(st.kv)} "
            f"kva={_f(kva)} kwrated={_f(kw_rated)} kwhrated={_f(max(st.kwh_rated, MIN_RATING))} "
            f"%stored={_f(st.soc_pct)} %reserve=0 %idlingkw=0 kvarmax={_f(kva)} "
            f"kvarmaxabs={_f(kva)} kw={_f(st.kw)} kvar={_f(st.kvar)} "
            f"vminpu={_f(VMIN_PU)} vmaxpu={_f(VMAX_PU)}"
        )

    def open_switches(self) -> None:
        for name in self.open_switch_names:
            self.emit(f"Open Line.{name} 1")

    def bases_and_coordinates(self) -> None:
        used = [self.bus_by_name[b] for b in self.used_buses]
        bad = [b.name for b in used if not b.kv_base_ln > 0]
        if bad:
            raise FeederInputError(
                f"feeder {self.feeder.name!r}: buses {bad[:10]} have no positive kv_base_ln"
            )
        bases = sorted({round(b.kv_base_ln * SQRT3, 9) for b in used})
        self.emit(f"Set VoltageBases={_array(bases)}")
        self.emit("CalcVoltageBases")
        for b in used:
            self.emit(f"SetkVBase bus={self.used_buses[b.name]} kvln={_f(b.kv_base_ln)}")
        for b in used:
            if b.x is not None and b.y is not None:
                self.emit(f"SetBusXY bus={self.used_buses[b.name]} x={_f(b.x)} y={_f(b.y)}")

    def write(self) -> str:
        f = self.feeder
        self.header()
        self.roots()
        for title, items, method in (
            ("lines", f.lines, self.line),
            ("switches", f.switches, self.switch),
            ("transformers", f.transformers, self.transformer),
        ):
            if items:
                self.emit(f"\n! {title}")
            for item in items:
                method(item)
        if f.regulators:
            self.emit("\n! regulators")
            self.regulators()
        for title, items, method in (
            ("capacitors", f.capacitors, self.capacitor),
            ("loads", f.loads, self.load),
            ("PV systems", f.pv_systems, self.pv),
            ("generators", f.generators, self.generator),
            ("storage", f.storage, self.storage),
        ):
            if items:
                self.emit(f"\n! {title}")
            for item in items:
                method(item)
        if self.open_switch_names:
            self.emit("\n! normally-open switches")
            self.open_switches()
        self.emit("\n! voltage bases and coordinates")
        self.bases_and_coordinates()
        return "\n".join(self.lines) + "\n"


def _wrap(angle_deg: float) -> float:
    """Angle wrapped into (-180, 180] degrees."""
    return (angle_deg + 180.0) % 360.0 - 180.0


def _amps(norm: float, emerg: float) -> str:
    """``normamps``/``emergamps``; 0 (no rating) for an infinite ampacity."""
    n = norm if math.isfinite(norm) else 0.0
    e = emerg if math.isfinite(emerg) else 0.0
    return f"normamps={_f(n)} emergamps={_f(e)}"


def _capacitor_steps(steps_closed: float) -> tuple[int, int]:
    """(number of equal steps, closed steps) representing a closed fraction of the bank."""
    frac = min(max(float(steps_closed), 0.0), 1.0)
    for steps in range(1, MAX_CAPACITOR_STEPS + 1):
        closed = round(frac * steps)
        if abs(closed / steps - frac) <= 1e-9:
            return steps, closed
    return MAX_CAPACITOR_STEPS, round(frac * MAX_CAPACITOR_STEPS)


def feeder_to_dss(feeder: Feeder) -> str:
    """The OpenDSS script of :func:`write_opendss` as a string (see the module docstring)."""
    writer = _Writer(feeder)
    text = writer.write()
    if writer.notes:
        warnings.warn(
            f"feeder {feeder.name!r} written to OpenDSS with approximations: "
            + "; ".join(dict.fromkeys(writer.notes)),
            UserWarning,
            stacklevel=3,
        )
    return text


def write_opendss(
    feeder: Feeder, directory: str | os.PathLike[str], *, filename: str = DEFAULT_MASTER_NAME
) -> Path:
    """Write ``feeder`` as a self-contained OpenDSS master script.

    Parameters
    ----------
    feeder : Feeder
        The feeder (engineering units: kV, kW, kvar, kVA, ohm, siemens).
    directory : str or PathLike
        Folder for the script (created if missing).
    filename : str
        Name of the master file.

    Returns
    -------
    Path
        The master script, to ``Compile``/``Redirect`` and ``Solve`` in OpenDSS.

    Raises
    ------
    FeederInputError
        The feeder cannot be expressed in OpenDSS (no root, dangling bus names, inconsistent
        phase counts, delta elements on one phase, ...); the message names the element.

    Warns
    -----
    UserWarning
        When something was approximated (shunt conductance of lines, asymmetric matrices).
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    text = feeder_to_dss(feeder)
    path = folder / filename
    fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
