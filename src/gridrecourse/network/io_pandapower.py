"""Import pandapower networks into a :class:`~gridrecourse.network.components.Feeder`.

pandapower describes a network per element table (``net.bus``, ``net.line``, ...). The
importer maps every table gridrecourse models and lists every other non-empty element table in
a single ``UserWarning`` (nothing is dropped silently).

Mapping
-------
* **Buses** become 3-phase buses (nodes 1, 2, 3) with ``kv_base_ln = vn_kv / sqrt(3)``.
  Coordinates come from ``net.bus_geodata`` (pandapower < 3) or the GeoJSON ``geo`` column.
  Out-of-service buses are skipped together with every element attached to them.
* **Lines** (in service) get a 3×3 phase impedance. When the line has finite zero-sequence data
  (``r0_ohm_per_km``, ``x0_ohm_per_km``) the phase matrix is built from the sequence
  impedances, ``Zs = (Z0 + 2 Z1) / 3`` on the diagonal and ``Zm = (Z0 − Z1) / 3`` off it (a
  transposed line with the neutral Kron-reduced, as ``pandapower.runpp_3ph`` assumes);
  otherwise it is the balanced diagonal ``Z1 · I`` (zero mutual coupling), the single-line
  model of a balanced case such as ``case33bw``. Shunt admittances (``c_nf_per_km``,
  ``g_us_per_km``, ``c0_nf_per_km``) follow the same rule. Impedances are totals
  (``· length_km / parallel``); ``norm_amps = max_i_ka · 1000 · df · parallel``.
* **Out-of-service lines** and lines with an open line switch become open :class:`Switch`
  objects (they are the normally-open ties of reconfiguration cases). Bus-bus switches become
  :class:`Switch` objects with their state.
* **Transformers** (``net.trafo``) become two-winding transformers: the vector group gives the
  winding connections (``D``/``d`` delta, ``Y``/``YN``/``y``/``yn`` grounded wye; a missing
  vector group is taken as ``Dyn``), ``%r = vkr_percent / 2`` per winding,
  ``XHL = sqrt(vk² − vkr²)`` and the ratio tap on ``tap_side``. Magnetizing data
  (``pfe_kw``, ``i0_percent``) and the phase-shift angle are not modeled (listed in the
  warning when non-zero).
* **Loads**: ``net.load`` → 3-phase wye (or delta for ``type == "delta"``) loads split
  equally, constant PQ unless the ``const_z``/``const_i`` percentages make it a ZIP load
  (OpenDSS model 8). ``net.asymmetric_load`` → one single-phase load per phase with non-zero
  power, named after the pandapower load (plus ``_a``/``_b``/``_c`` when it loads several
  phases). All powers include ``scaling``.
* **Static generators** of a PV type → :class:`PVSystem`, others → :class:`Generator`
  (``net.sgen`` 3-phase, ``net.asymmetric_sgen`` per phase). ``net.storage`` →
  :class:`Storage` (pandapower's load convention is flipped: positive ``kw`` discharges).
  Capacitive ``net.shunt`` rows → :class:`Capacitor`.
* **ext_grid** → :class:`Root` at its bus with ``vm_pu`` and ``va_degree``.

Names are the pandapower ``name`` when it is a non-empty string unique in its table
(case-insensitively, as OpenDSS compares names), otherwise ``<prefix><index>`` (``bus12``,
``line3``, ...).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from gridrecourse.errors import FeederInputError, UnknownFeederError
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
    Root,
    Storage,
    Switch,
    Transformer,
    Winding,
)

SOURCE_KIND = "pandapower"
SQRT3 = math.sqrt(3.0)
THREE_PHASES: tuple[int, int, int] = (1, 2, 3)
#: Per-phase column suffixes of pandapower's asymmetric tables, with the OpenDSS node.
PHASE_SUFFIXES: tuple[tuple[str, int], ...] = (("a", 1), ("b", 2), ("c", 3))
#: Phase pairs of a delta-connected asymmetric element (phase a is branch a-b, ...).
DELTA_PAIRS: dict[int, tuple[int, int]] = {1: (1, 2), 2: (2, 3), 3: (3, 1)}
#: Angle of each phase relative to phase a (degrees).
PHASE_SHIFT_DEG: dict[int, float] = {1: 0.0, 2: -120.0, 3: 120.0}
MW_TO_KW = 1000.0
KA_TO_A = 1000.0
NF_TO_F = 1e-9
US_TO_S = 1e-6
DEFAULT_VECTOR_GROUP = "Dyn"
DELTA_TYPE = "delta"
RATIO_TAP_CHANGER = "Ratio"
PV_TYPE_PATTERN = re.compile(r"pv", re.IGNORECASE)

#: Built-in cases: name -> pandapower.networks function name.
BUILTIN_CASES: dict[str, str] = {
    "case33bw": "case33bw",
    "ieee_european_lv_asymmetric": "ieee_european_lv_asymmetric",
}

#: Element tables the importer maps.
MODELED_TABLES = frozenset(
    {
        "bus",
        "line",
        "switch",
        "trafo",
        "load",
        "asymmetric_load",
        "sgen",
        "asymmetric_sgen",
        "storage",
        "shunt",
        "ext_grid",
    }
)
#: Tables without physics (costs, measurements, plotting data): never warned about.
IGNORED_TABLES = frozenset(
    {"bus_geodata", "line_geodata", "poly_cost", "pwl_cost", "measurement", "group"}
)

# Column names (pandapower 2.x and 3.x).
COL_NAME = "name"
COL_IN_SERVICE = "in_service"
COL_GEO = "geo"
COL_SCALING = "scaling"


def _table(net: Any, key: str) -> pd.DataFrame:
    table = net[key] if key in net else None
    if isinstance(table, pd.DataFrame):
        return table
    return pd.DataFrame()


def _in_service(table: pd.DataFrame) -> pd.DataFrame:
    if COL_IN_SERVICE in table.columns:
        return table[table[COL_IN_SERVICE].astype(bool)]
    return table


def _num(row: pd.Series, column: str, default: float = 0.0) -> float:
    """A numeric cell as float; ``default`` when the column is missing or the cell is NaN."""
    if column not in row.index:
        return default
    value = row[column]
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(out) else out


def _scaling(row: pd.Series) -> float:
    return _num(row, COL_SCALING, 1.0)


def _unique_names(table: pd.DataFrame, prefix: str) -> dict[Any, str]:
    """Map table index -> name: the pandapower name if non-empty and unique, else prefix+idx."""
    raw: dict[Any, str | None] = {}
    for idx in table.index:
        value = table.at[idx, COL_NAME] if COL_NAME in table.columns else None
        text = None
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            text = str(value).strip() or None
        raw[idx] = text
    counts: dict[str, int] = {}
    for text in raw.values():
        if text is not None:
            counts[text.lower()] = counts.get(text.lower(), 0) + 1
    names: dict[Any, str] = {}
    taken: set[str] = set()
    fallback: list[Any] = []
    for idx, text in raw.items():
        if text is not None and counts[text.lower()] == 1:
            names[idx] = text
            taken.add(text.lower())
        else:
            fallback.append(idx)
    for idx in fallback:
        candidate = f"{prefix}{idx}"
        suffix = 1
        while candidate.lower() in taken:
            candidate = f"{prefix}{idx}_{suffix}"
            suffix += 1
        names[idx] = candidate
        taken.add(candidate.lower())
    return names


def _parse_geo(value: Any) -> tuple[float | None, float | None]:
    """(x, y) from a GeoJSON point given as a string, mapping or geojson object."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, None
    try:
        data = json.loads(value) if isinstance(value, str) else value
        coords = data["coordinates"]
        if data.get("type", "Point") != "Point":
            return None, None
        return float(coords[0]), float(coords[1])
    except (TypeError, ValueError, KeyError, IndexError, AttributeError):
        return None, None


XY = tuple[float | None, float | None]


def _bus_coordinates(net: Any, index: Iterable[Any]) -> dict[Any, XY]:
    coords: dict[Any, XY] = {}
    geodata = _table(net, "bus_geodata")
    bus = _table(net, "bus")
    for idx in index:
        xy: XY = (None, None)
        if idx in geodata.index and {"x", "y"} <= set(geodata.columns):
            x, y = geodata.at[idx, "x"], geodata.at[idx, "y"]
            if pd.notna(x) and pd.notna(y):
                xy = (float(x), float(y))
        if xy == (None, None) and COL_GEO in bus.columns:
            xy = _parse_geo(bus.at[idx, COL_GEO])
        coords[idx] = xy
    return coords


def _sequence_to_phase(z1: complex, z0: complex) -> np.ndarray:
    """3×3 phase matrix of a transposed element from its sequence values."""
    zs = (z0 + 2.0 * z1) / 3.0
    zm = (z0 - z1) / 3.0
    return np.full((3, 3), zm, dtype=complex) + np.eye(3) * (zs - zm)


def _balanced_diagonal(z1: complex) -> np.ndarray:
    return np.eye(3, dtype=complex) * z1


def line_phase_matrices(row: pd.Series, f_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Total series impedance (ohm) and shunt admittance (S) 3×3 matrices of a pandapower line.

    Parameters
    ----------
    row : pandas.Series
        A row of ``net.line``.
    f_hz : float
        System frequency (Hz), for the capacitive susceptance.

    Returns
    -------
    z_ohm, y_shunt_siemens : complex ndarray, shape (3, 3)
        Sequence-based matrices when the row has finite ``r0_ohm_per_km`` and
        ``x0_ohm_per_km``; the balanced diagonal otherwise.
    """
    length = _num(row, "length_km")
    parallel = _num(row, "parallel", 1.0) or 1.0
    scale_z = length / parallel
    scale_y = length * parallel
    omega = 2.0 * math.pi * f_hz
    z1 = complex(_num(row, "r_ohm_per_km"), _num(row, "x_ohm_per_km")) * scale_z
    y1 = (
        complex(_num(row, "g_us_per_km") * US_TO_S, omega * _num(row, "c_nf_per_km") * NF_TO_F)
        * scale_y
    )
    r0 = _num(row, "r0_ohm_per_km", math.nan)
    x0 = _num(row, "x0_ohm_per_km", math.nan)
    if math.isnan(r0) or math.isnan(x0):
        return _balanced_diagonal(z1), _balanced_diagonal(y1)
    z0 = complex(r0, x0) * scale_z
    g0 = _num(row, "g0_us_per_km", _num(row, "g_us_per_km"))
    c0 = _num(row, "c0_nf_per_km", _num(row, "c_nf_per_km"))
    y0 = complex(g0 * US_TO_S, omega * c0 * NF_TO_F) * scale_y
    return _sequence_to_phase(z1, z0), _sequence_to_phase(y1, y0)


def _ampacity(row: pd.Series) -> float:
    max_i_ka = _num(row, "max_i_ka", math.nan)
    if math.isnan(max_i_ka) or max_i_ka <= 0:
        return math.inf
    return max_i_ka * KA_TO_A * _num(row, "df", 1.0) * (_num(row, "parallel", 1.0) or 1.0)


def _parse_vector_group(group: Any, trafo_name: str) -> tuple[Connection, Connection, list[str]]:
    """Winding connections (HV, LV) of a pandapower vector group such as ``Dyn5``."""
    notes: list[str] = []
    text = str(group).strip() if isinstance(group, str) and group.strip() else None
    if text is None:
        text = DEFAULT_VECTOR_GROUP
        notes.append(f"trafo {trafo_name}: no vector group, assumed {DEFAULT_VECTOR_GROUP}")
    match = re.fullmatch(r"([DYZ]N?)([dyz]n?)\d*", text)
    if match is None:
        raise FeederInputError(
            f"pandapower trafo {trafo_name!r}: vector group {text!r} is not of the form "
            "HVlv[clock] with HV in D/Y/YN and lv in d/y/yn"
        )
    conns = []
    for part in match.groups():
        letter = part[0].upper()
        if letter == "Z":
            raise FeederInputError(
                f"pandapower trafo {trafo_name!r}: zigzag winding in vector group {text!r} "
                "is not supported"
            )
        if letter == "Y" and not part.upper().endswith("N"):
            notes.append(f"trafo {trafo_name}: ungrounded wye winding modeled as grounded")
        conns.append(Connection.DELTA if letter == "D" else Connection.WYE)
    return conns[0], conns[1], notes


def _trafo_taps(row: pd.Series, notes: list[str], name: str) -> tuple[float, float]:
    """Per-unit ratio taps (HV, LV) from pandapower's tap position.

    Only in-phase ratio tap changers are mapped; an off-neutral phase-shifting or tabular tap
    changer is left at tap 1 and noted.
    """
    step = _num(row, "tap_step_percent")
    position = _num(row, "tap_pos", math.nan)
    neutral = _num(row, "tap_neutral", 0.0)
    if math.isnan(position) or position == neutral:
        return 1.0, 1.0
    changer = row.get("tap_changer_type")
    if (isinstance(changer, str) and changer != RATIO_TAP_CHANGER) or _num(
        row, "tap_step_degree"
    ) != 0.0:
        notes.append(f"trafo {name}: {changer or 'phase-shifting'} tap changer left at neutral")
        return 1.0, 1.0
    tap = 1.0 + (position - neutral) * step / 100.0
    side = str(row.get("tap_side", "hv")).lower()
    return (tap, 1.0) if side != "lv" else (1.0, tap)


def _zip_model(row: pd.Series) -> tuple[LoadModel, tuple[float, ...]]:
    """OpenDSS load model and ZIPV of a pandapower load (constant PQ when no Z/I share)."""
    z_p = _num(row, "const_z_p_percent", _num(row, "const_z_percent"))
    i_p = _num(row, "const_i_p_percent", _num(row, "const_i_percent"))
    z_q = _num(row, "const_z_q_percent", _num(row, "const_z_percent"))
    i_q = _num(row, "const_i_q_percent", _num(row, "const_i_percent"))
    if z_p == i_p == z_q == i_q == 0.0:
        return LoadModel.CONSTANT_PQ, ()
    zipv = (
        z_p / 100.0,
        i_p / 100.0,
        1.0 - (z_p + i_p) / 100.0,
        z_q / 100.0,
        i_q / 100.0,
        1.0 - (z_q + i_q) / 100.0,
        0.0,
    )
    return LoadModel.ZIP, zipv


class _Importer:
    """State of one import: bus name lookup, kV bases and the notes for the warning."""

    def __init__(self, net: Any, name: str):
        self.net = net
        self.name = name
        self.notes: list[str] = []
        self.skipped_on_dead_bus = 0
        bus = _table(net, "bus")
        if bus.empty:
            raise FeederInputError(f"pandapower net {name!r} has no buses")
        self.all_bus_names = _unique_names(bus, "bus")
        live = _in_service(bus)
        self.bus_names = {idx: self.all_bus_names[idx] for idx in live.index}
        self.vn_kv = {idx: float(live.at[idx, "vn_kv"]) for idx in live.index}
        self.f_hz = float(getattr(net, "f_hz", 50.0) or 50.0)

    def bus_of(self, idx: Any) -> str | None:
        """Name of a live bus, or None (counting the skipped element)."""
        try:
            key = int(idx)
        except (TypeError, ValueError):
            key = idx
        if key not in self.bus_names:
            self.skipped_on_dead_bus += 1
            return None
        return self.bus_names[key]

    # -- buses and roots -------------------------------------------------------------------
    def buses(self) -> tuple[Bus, ...]:
        coords = _bus_coordinates(self.net, self.bus_names)
        out = []
        for idx, name in self.bus_names.items():
            vn = self.vn_kv[idx]
            if not vn > 0:
                raise FeederInputError(
                    f"pandapower net {self.name!r}: bus {name!r} has vn_kv={vn}; expected > 0"
                )
            x, y = coords[idx]
            out.append(Bus(name=name, phases=THREE_PHASES, kv_base_ln=vn / SQRT3, x=x, y=y))
        return tuple(out)

    def roots(self) -> tuple[Root, ...]:
        roots = []
        for _, row in _in_service(_table(self.net, "ext_grid")).iterrows():
            bus = self.bus_of(row["bus"])
            if bus is None:
                continue
            vm = _num(row, "vm_pu", 1.0)
            va = _num(row, "va_degree", 0.0)
            roots.append(
                Root(
                    bus=bus,
                    v_pu=(vm, vm, vm),
                    angle_deg=tuple(va + PHASE_SHIFT_DEG[p] for p in THREE_PHASES),
                )
            )
        if not roots:
            raise FeederInputError(
                f"pandapower net {self.name!r} has no in-service ext_grid: a feeder needs a "
                "voltage reference (slack) bus"
            )
        return tuple(roots)

    # -- branches --------------------------------------------------------------------------
    def _open_switched(self, element_type: str) -> set[int]:
        switch = _table(self.net, "switch")
        if switch.empty:
            return set()
        mask = (switch["et"] == element_type) & ~switch["closed"].astype(bool)
        return {int(e) for e in switch.loc[mask, "element"]}

    def lines_and_switches(self) -> tuple[tuple[Line, ...], tuple[Switch, ...]]:
        table = _table(self.net, "line")
        names = _unique_names(table, "line")
        open_by_switch = self._open_switched("l")
        lines: list[Line] = []
        switches: list[Switch] = []
        for idx, row in table.iterrows():
            bus1, bus2 = self.bus_of(row["from_bus"]), self.bus_of(row["to_bus"])
            if bus1 is None or bus2 is None:
                continue
            in_service = bool(row.get(COL_IN_SERVICE, True))
            if not in_service or int(idx) in open_by_switch:
                switches.append(
                    Switch(
                        names[idx], bus1, bus2, THREE_PHASES, THREE_PHASES, False, _ampacity(row)
                    )
                )
                continue
            z, y = line_phase_matrices(row, self.f_hz)
            lines.append(
                Line(
                    name=names[idx],
                    bus1=bus1,
                    bus2=bus2,
                    phases1=THREE_PHASES,
                    phases2=THREE_PHASES,
                    z_ohm=z,
                    y_shunt_siemens=y,
                    norm_amps=_ampacity(row),
                    length_km=_num(row, "length_km"),
                )
            )
        switch = _table(self.net, "switch")
        if not switch.empty:
            bus_bus = switch[switch["et"] == "b"]
            sw_names = _unique_names(bus_bus, "switch")
            taken = {ln.name.lower() for ln in lines} | {s.name.lower() for s in switches}
            for idx, row in bus_bus.iterrows():
                bus1, bus2 = self.bus_of(row["bus"]), self.bus_of(row["element"])
                if bus1 is None or bus2 is None:
                    continue
                name = sw_names[idx]
                if name.lower() in taken:
                    name = f"switch{idx}"
                taken.add(name.lower())
                amps = _num(row, "in_ka", math.nan) * KA_TO_A
                switches.append(
                    Switch(
                        name,
                        bus1,
                        bus2,
                        THREE_PHASES,
                        THREE_PHASES,
                        bool(row["closed"]),
                        amps if amps > 0 else math.inf,
                    )
                )
        return tuple(lines), tuple(switches)

    def transformers(self) -> tuple[Transformer, ...]:
        table = _in_service(_table(self.net, "trafo"))
        names = _unique_names(table, "trafo")
        open_by_switch = self._open_switched("t")
        out = []
        for idx, row in table.iterrows():
            name = names[idx]
            if int(idx) in open_by_switch:
                self.notes.append(f"trafo {name}: open trafo switch, transformer skipped")
                continue
            hv, lv = self.bus_of(row["hv_bus"]), self.bus_of(row["lv_bus"])
            if hv is None or lv is None:
                continue
            conn_hv, conn_lv, notes = _parse_vector_group(row.get("vector_group"), name)
            self.notes.extend(notes)
            if _num(row, "pfe_kw") != 0.0 or _num(row, "i0_percent") != 0.0:
                self.notes.append(f"trafo {name}: magnetizing branch (pfe_kw, i0_percent) ignored")
            parallel = _num(row, "parallel", 1.0) or 1.0
            kva = _num(row, "sn_mva") * MW_TO_KW * parallel
            vk, vkr = _num(row, "vk_percent"), _num(row, "vkr_percent")
            if vk < vkr or kva <= 0:
                raise FeederInputError(
                    f"pandapower trafo {name!r}: need sn_mva > 0 and vk_percent >= vkr_percent "
                    f"(got sn_mva={row['sn_mva']}, vk_percent={vk}, vkr_percent={vkr})"
                )
            tap_hv, tap_lv = _trafo_taps(row, self.notes, name)
            windings = (
                Winding(hv, THREE_PHASES, conn_hv, _num(row, "vn_hv_kv"), kva, vkr / 2.0, tap_hv),
                Winding(lv, THREE_PHASES, conn_lv, _num(row, "vn_lv_kv"), kva, vkr / 2.0, tap_lv),
            )
            out.append(Transformer(name, 3, windings, (math.sqrt(vk**2 - vkr**2),)))
        return tuple(out)

    # -- shunt elements --------------------------------------------------------------------
    def _per_phase(self, table_key: str, prefix: str) -> list[_PhaseShunt]:
        """Rows of an asymmetric table split into one element per phase with non-zero P or Q."""
        table = _in_service(_table(self.net, table_key))
        names = _unique_names(table, prefix)
        out = []
        for idx, row in table.iterrows():
            bus = self.bus_of(row["bus"])
            if bus is None:
                continue
            delta = str(row.get("type", "wye")).lower() == DELTA_TYPE
            scale = _scaling(row) * MW_TO_KW
            powers = [
                (node, _num(row, f"p_{s}_mw") * scale, _num(row, f"q_{s}_mvar") * scale)
                for s, node in PHASE_SUFFIXES
            ]
            active = [(n, p, q) for n, p, q in powers if p != 0.0 or q != 0.0]
            vn = self.vn_kv[int(row["bus"])]
            for node, p, q in active:
                letter = PHASE_SUFFIXES[node - 1][0]
                name = names[idx] if len(active) == 1 else f"{names[idx]}_{letter}"
                if delta:
                    phases, conn, kv = DELTA_PAIRS[node], Connection.DELTA, vn
                else:
                    phases, conn, kv = (node,), Connection.WYE, vn / SQRT3
                out.append(_PhaseShunt(name, bus, phases, conn, p, q, kv, letter, row))
        return out

    def loads(self) -> tuple[Load, ...]:
        out: list[Load] = []
        table = _in_service(_table(self.net, "load"))
        names = _unique_names(table, "load")
        for idx, row in table.iterrows():
            bus = self.bus_of(row["bus"])
            if bus is None:
                continue
            scale = _scaling(row) * MW_TO_KW
            model, zipv = _zip_model(row)
            delta = str(row.get("type", "wye")).lower() == DELTA_TYPE
            out.append(
                Load(
                    name=names[idx],
                    bus=bus,
                    phases=THREE_PHASES,
                    connection=Connection.DELTA if delta else Connection.WYE,
                    kw=_num(row, "p_mw") * scale,
                    kvar=_num(row, "q_mvar") * scale,
                    kv=self.vn_kv[int(row["bus"])],
                    model=model,
                    zipv=zipv,
                )
            )
        taken = {ld.name.lower() for ld in out}
        for e in self._per_phase("asymmetric_load", "asymload"):
            load = Load(e.name, e.bus, e.phases, e.connection, e.kw, e.kvar, e.kv)
            out.append(_renamed_if_taken(load, taken))
        return tuple(out)

    def generation(self) -> tuple[tuple[PVSystem, ...], tuple[Generator, ...]]:
        pvs: list[PVSystem] = []
        gens: list[Generator] = []
        taken: set[str] = set()

        def add(e: _PhaseShunt, kva: float) -> None:
            if PV_TYPE_PATTERN.search(str(e.row.get("type", ""))):
                pv = PVSystem(e.name, e.bus, e.phases, e.connection, kva, e.kw, e.kw, e.kvar, e.kv)
                pvs.append(_renamed_if_taken(pv, taken))
            else:
                gen = Generator(e.name, e.bus, e.phases, e.connection, e.kw, e.kvar, kva, e.kv)
                gens.append(_renamed_if_taken(gen, taken))

        table = _in_service(_table(self.net, "sgen"))
        names = _unique_names(table, "sgen")
        for idx, row in table.iterrows():
            bus = self.bus_of(row["bus"])
            if bus is None:
                continue
            scale = _scaling(row) * MW_TO_KW
            p, q = _num(row, "p_mw") * scale, _num(row, "q_mvar") * scale
            vn = self.vn_kv[int(row["bus"])]
            e = _PhaseShunt(names[idx], bus, THREE_PHASES, Connection.WYE, p, q, vn, "", row)
            add(e, _rating_kva(row, "sn_mva", p, q))
        for e in self._per_phase("asymmetric_sgen", "asymsgen"):
            add(e, _rating_kva(e.row, f"sn_{e.letter}_mva", e.kw, e.kvar))
        return tuple(pvs), tuple(gens)

    def storage(self) -> tuple[Storage, ...]:
        table = _in_service(_table(self.net, "storage"))
        names = _unique_names(table, "storage")
        out = []
        for idx, row in table.iterrows():
            bus = self.bus_of(row["bus"])
            if bus is None:
                continue
            scale = _scaling(row) * MW_TO_KW
            kw = -_num(row, "p_mw") * scale
            kvar = -_num(row, "q_mvar") * scale
            sn = _num(row, "sn_mva", math.nan) * MW_TO_KW
            kva = sn if sn > 0 else math.hypot(kw, kvar)
            out.append(
                Storage(
                    name=names[idx],
                    bus=bus,
                    phases=THREE_PHASES,
                    connection=Connection.WYE,
                    kw_rated=kva,
                    kwh_rated=_num(row, "max_e_mwh") * MW_TO_KW,
                    kva=kva,
                    kw=kw,
                    kvar=kvar,
                    kv=self.vn_kv[int(row["bus"])],
                    soc_pct=_num(row, "soc_percent", 50.0),
                )
            )
        return tuple(out)

    def capacitors(self) -> tuple[Capacitor, ...]:
        table = _in_service(_table(self.net, "shunt"))
        names = _unique_names(table, "shunt")
        out = []
        for idx, row in table.iterrows():
            bus = self.bus_of(row["bus"])
            if bus is None:
                continue
            q, p = _num(row, "q_mvar"), _num(row, "p_mw")
            if q >= 0.0 or p != 0.0:
                self.notes.append(
                    f"shunt {names[idx]}: only lossless capacitive shunts (q_mvar < 0, p_mw = 0) "
                    "are modeled; skipped"
                )
                continue
            max_step = _num(row, "max_step", 1.0) or 1.0
            step = _num(row, "step", 1.0)
            kv = _num(row, "vn_kv", self.vn_kv[int(row["bus"])])
            out.append(
                Capacitor(
                    name=names[idx],
                    bus=bus,
                    phases=THREE_PHASES,
                    connection=Connection.WYE,
                    kvar=-q * max_step * MW_TO_KW,
                    kv=kv,
                    steps_closed=step / max_step,
                )
            )
        return tuple(out)

    def unsupported(self) -> dict[str, int]:
        out = {}
        for key in self.net.keys():
            if key.startswith(("_", "res_")) or key in MODELED_TABLES or key in IGNORED_TABLES:
                continue
            table = self.net[key]
            if isinstance(table, pd.DataFrame) and len(table):
                out[key] = len(table)
        return out


@dataclass(frozen=True)
class _PhaseShunt:
    """One shunt element read from a pandapower row (powers in kW/kvar, ``kv`` rated)."""

    name: str
    bus: str
    phases: tuple[int, ...]
    connection: Connection
    kw: float
    kvar: float
    kv: float
    letter: str
    row: pd.Series


def _rating_kva(row: pd.Series, column: str, p_kw: float, q_kvar: float) -> float:
    """Rating (kVA) from an ``sn_*_mva`` column, else the apparent power of the dispatch."""
    sn = _num(row, column, math.nan) * MW_TO_KW
    return sn if sn > 0 else math.hypot(p_kw, q_kvar)


def _renamed_if_taken(element: Any, taken: set[str]) -> Any:
    """Give ``element`` a unique name (case-insensitive) within ``taken``, and record it."""
    name = element.name
    suffix = 1
    while name.lower() in taken:
        name = f"{element.name}_{suffix}"
        suffix += 1
    taken.add(name.lower())
    return element if name == element.name else replace(element, name=name)


def feeder_from_pandapower(net: Any, name: str) -> Feeder:
    """Convert a pandapower network into a :class:`Feeder`.

    Parameters
    ----------
    net : pandapowerNet
        The network (not modified; no power flow is run).
    name : str
        Feeder name.

    Returns
    -------
    Feeder
        Every bus 3-phase, with ``source_kind="pandapower"`` and ``frequency_hz = net.f_hz``.
        Units: kV, kW, kvar, kVA, ohm, siemens (see the module docstring for the mapping).

    Raises
    ------
    FeederInputError
        No bus, no in-service ``ext_grid``, a non-positive ``vn_kv``, an unsupported vector
        group or inconsistent transformer data.

    Warns
    -----
    UserWarning
        One warning listing the non-empty element tables that are not modeled and the data
        that was approximated or skipped (magnetizing branches, reactive shunts, ...).
    """
    imp = _Importer(net, name)
    buses = imp.buses()
    roots = imp.roots()
    lines, switches = imp.lines_and_switches()
    transformers = imp.transformers()
    loads = imp.loads()
    pvs, gens = imp.generation()
    storage = imp.storage()
    capacitors = imp.capacitors()
    problems = [f"{n} {key}" for key, n in sorted(imp.unsupported().items())]
    if imp.skipped_on_dead_bus:
        imp.notes.append(
            f"{imp.skipped_on_dead_bus} elements attached to out-of-service buses skipped"
        )
    if problems or imp.notes:
        parts = []
        if problems:
            listed = ", ".join(problems)
            parts.append(f"element tables not modeled by gridrecourse (ignored): {listed}")
        parts.extend(imp.notes)
        warnings.warn(f"pandapower net {name!r}: " + "; ".join(parts), UserWarning, stacklevel=2)
    return Feeder(
        name=name,
        buses=buses,
        roots=roots,
        lines=lines,
        switches=switches,
        transformers=transformers,
        capacitors=capacitors,
        loads=loads,
        pv_systems=pvs,
        generators=gens,
        storage=storage,
        source_path=None,
        source_kind=SOURCE_KIND,
        frequency_hz=imp.f_hz,
    )


def load_pandapower_net(name: str) -> Any:
    """The pandapower network of a built-in case (data ships with pandapower; no download).

    Raises
    ------
    UnknownFeederError
        ``name`` is not one of :data:`BUILTIN_CASES`.
    """
    if name not in BUILTIN_CASES:
        raise UnknownFeederError(
            f"unknown pandapower case {name!r}: expected one of {', '.join(sorted(BUILTIN_CASES))}"
        )
    import pandapower.networks as pn

    return getattr(pn, BUILTIN_CASES[name])()


def load_pandapower_case(name: str) -> Feeder:
    """Import a built-in pandapower case.

    Parameters
    ----------
    name : str
        ``"case33bw"`` (Baran & Wu 33-bus, 12.66 kV, balanced: every bus 3-phase with a
        diagonal impedance, loads 3-phase wye, the 5 tie lines open switches) or
        ``"ieee_european_lv_asymmetric"`` (IEEE European LV test feeder, 907 buses, 0.416 kV,
        one 11/0.416 kV Dyn transformer, 55 single-phase loads).

    Returns
    -------
    Feeder
        Named ``name``, ``source_kind="pandapower"``.
    """
    return feeder_from_pandapower(load_pandapower_net(name), name)
