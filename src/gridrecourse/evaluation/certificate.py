"""AC certificate of a decision: the decision pushed into OpenDSS and solved period by period.

Every command that returns a decision (``opf``, ``siting``, ``expand``; later ``voltvar`` and
``operate``) states it as a :class:`DecisionSchedule` in engineering terms (element names, kW,
kvar, tap ratios, switch states per period) and calls :func:`certify`, which

1. compiles the feeder once (its own OpenDSS master, or a written script for other sources) and
   solves the snapshot with controls active, so regulator taps and capacitor steps start where
   the linear model read them;
2. adds one OpenDSS element per *new* resource of the decision (``PVSystem`` for sited PV,
   ``Storage`` for sized batteries, wye, on the bus phases the model spread them over);
3. switches every control off and, for each period (an hour of the decision day, or a
   scenario), writes the loads, the PV and storage dispatch, the taps and the switch states,
   solves the AC power flow and reads node voltages (``Circuit.AllBusMagPu``) and branch
   loadings (``PDElements.AllPctNorm``);
4. compares the AC voltages with the linear model's voltages of the same decision (delta-fed
   nodes on ``|V_LL|/√3``, as ``validate`` does).

One compile and many solves: a 24-period decision on the IEEE 9500 takes about as long as one
compile of its master (``benchmarks/bench_certificate.py``).

Definitions (the keys every command puts in its JSON):

``ac_min_voltage_pu``, ``ac_max_voltage_pu``
    Extreme AC node voltage over the modeled nodes and all periods (in the model's meaning:
    its voltage base, ``|V_LL|/√3`` for nodes behind delta windings).
``ac_voltage_violations``
    Node-periods of the modeled nodes outside ``[v_lower, v_upper]`` (by more than 1e-6 p.u.).
``ac_thermal_violations``
    Branch-periods (lines and transformers with a normal rating) above 100 % of normal amps.
``ac_max_model_error_pu``
    ``max |V_model − V_AC|`` over the compared nodes and periods (NaN without model voltages).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import opendssdirect as dss
import pandas as pd

from gridrecourse.errors import FeederInputError
from gridrecourse.evaluation.ac_check import ensure_compiled
from gridrecourse.network.components import Feeder
from gridrecourse.network.math_model import MathFeeder

if TYPE_CHECKING:
    from gridrecourse.problems.opf import OPFACCheck, OPFModel, OPFResult
    from gridrecourse.problems.siting import PVSitingProblem, SitingDecision
    from gridrecourse.problems.storage_expansion import (
        StorageExpansionProblem,
        StorageExpansionSolution,
    )

#: Prefix of the OpenDSS elements the certificate adds for new PV and batteries.
NEW_ELEMENT_PREFIX = "gr_"
DEFAULT_V_LOWER = 0.95
DEFAULT_V_UPPER = 1.05
#: Tolerance before a voltage counts as outside the band (p.u.).
VOLTAGE_TOLERANCE_PU = 1e-6
MAX_ITERATIONS = 100
#: OpenDSS element classes whose loadings count as thermal violations.
_THERMAL_CLASSES = ("line.", "transformer.")


class DERKind(str, Enum):
    """Kind of a resource a decision adds to the feeder."""

    PV = "pv"
    STORAGE = "storage"


@dataclass(frozen=True, eq=False)
class NewDER:
    """A PV system or battery the decision adds (it does not exist in the source feeder).

    Attributes
    ----------
    name : str
        Name of the new element (OpenDSS gets ``gr_<name>``).
    kind : DERKind
    bus : str
        Bus it connects to.
    phases : tuple of int
        Phases (wye); the output is split equally over them.
    kva : float
        Inverter rating (kVA); raised to the largest dispatched ``|S|`` so that OpenDSS
        injects exactly the decision.
    kwh : float
        Energy rating (kWh, storage only; snapshot solves do not change the state of charge).
    p_kw, q_kvar : ndarray, shape (T,)
        Output per period (kW, kvar; injection positive, a charging battery has ``p < 0``).
    """

    name: str
    kind: DERKind
    bus: str
    phases: tuple[int, ...]
    kva: float
    p_kw: np.ndarray
    q_kvar: np.ndarray
    kwh: float = 0.0


@dataclass(frozen=True, eq=False)
class DecisionSchedule:
    """A decision stated per period in engineering terms (what :func:`certify` pushes).

    Absent parts keep the circuit's values (after its controlled snapshot).

    Attributes
    ----------
    n_periods : int
    load_names : tuple of str
        Loads whose power is set each period.
    load_kw, load_kvar : ndarray, shape (n_loads, T)
        Total power of each load (kW, kvar).
    pv_names : tuple of str
        Existing PV systems whose dispatch is set.
    pv_kw, pv_kvar : ndarray, shape (n_pv, T)
    new_der : tuple of NewDER
        PV and batteries added by the decision.
    taps : mapping
        ``{(transformer, winding): tap ratios (T,)}`` (p.u.).
    switch_closed : mapping
        ``{switch line name: closed per period (T,)}``.
    model : MathFeeder, optional
        The linear model the decision was made on (node names, delta-fed nodes).
    model_v_pu : ndarray, shape (N, T), optional
        The linear model's voltage magnitudes of the decision.
    period_labels : tuple of str, optional
        Column labels of the periods (default ``t00`` …).
    """

    n_periods: int
    load_names: tuple[str, ...] = ()
    load_kw: np.ndarray | None = None
    load_kvar: np.ndarray | None = None
    pv_names: tuple[str, ...] = ()
    pv_kw: np.ndarray | None = None
    pv_kvar: np.ndarray | None = None
    new_der: tuple[NewDER, ...] = ()
    taps: Mapping[tuple[str, int], np.ndarray] = field(default_factory=dict)
    switch_closed: Mapping[str, np.ndarray] = field(default_factory=dict)
    model: MathFeeder | None = None
    model_v_pu: np.ndarray | None = None
    period_labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        T = self.n_periods
        if T < 1:
            raise FeederInputError(f"decision schedule: n_periods must be >= 1, got {T}")
        shapes = {
            "load_kw": (self.load_kw, len(self.load_names)),
            "load_kvar": (self.load_kvar, len(self.load_names)),
            "pv_kw": (self.pv_kw, len(self.pv_names)),
            "pv_kvar": (self.pv_kvar, len(self.pv_names)),
        }
        for label, (arr, rows) in shapes.items():
            if arr is not None and np.shape(arr) != (rows, T):
                raise FeederInputError(
                    f"decision schedule: {label} has shape {np.shape(arr)}, expected ({rows}, {T})"
                )
        for der in self.new_der:
            if np.shape(der.p_kw) != (T,) or np.shape(der.q_kvar) != (T,):
                raise FeederInputError(
                    f"decision schedule: new {der.kind.value} {der.name!r} needs p_kw and q_kvar "
                    f"of shape ({T},)"
                )
        if self.model_v_pu is not None:
            if self.model is None or np.shape(self.model_v_pu) != (self.model.n_nodes, T):
                raise FeederInputError(
                    "decision schedule: model_v_pu needs the model and shape (n_nodes, "
                    f"{T}), got {np.shape(self.model_v_pu)}"
                )

    @property
    def labels(self) -> tuple[str, ...]:
        """Period labels."""
        if self.period_labels is not None:
            return tuple(self.period_labels)
        return tuple(f"t{t:02d}" for t in range(self.n_periods))


@dataclass(frozen=True)
class ACCertificate:
    """AC check of a decision (module docstring for the definitions).

    Attributes
    ----------
    n_periods : int
    converged : bool
        Every period's AC power flow converged.
    ac_min_voltage_pu, ac_max_voltage_pu : float
    ac_voltage_violations : int
        Node-periods of the modeled nodes outside the band.
    ac_voltage_violations_all_nodes : int
        Same over every AC node (including secondaries the model folded).
    ac_thermal_violations : int
        Branch-periods above 100 % of normal amps.
    ac_max_loading_pct : float
    ac_max_model_error_pu : float
        ``max |V_model − V_AC|`` (NaN without model voltages).
    ac_worst_model_error_node : str
    ac_worst_model_error_period : int
    v_lower, v_upper : float
        The band (p.u.).
    n_checked_nodes : int
    n_new_pv, n_new_storage : int
    seconds : float
        Wall time (compile and all solves).
    """

    n_periods: int
    converged: bool
    ac_min_voltage_pu: float
    ac_max_voltage_pu: float
    ac_voltage_violations: int
    ac_voltage_violations_all_nodes: int
    ac_thermal_violations: int
    ac_max_loading_pct: float
    ac_max_model_error_pu: float
    ac_worst_model_error_node: str
    ac_worst_model_error_period: int
    v_lower: float
    v_upper: float
    n_checked_nodes: int
    n_new_pv: int
    n_new_storage: int
    seconds: float

    def summary(self) -> dict[str, Any]:
        """JSON-ready ``{key: value}`` (NaN becomes ``None``)."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, float) and not np.isfinite(value):
                value = None
            out[key if key.startswith("ac_") else f"ac_{key}"] = value
        return out


@dataclass(frozen=True, eq=False)
class CertificateRun:
    """The certificate with its tables.

    Attributes
    ----------
    certificate : ACCertificate
    nodes : DataFrame
        One row per AC node: ``node``, ``bus``, ``phase``, ``kv_base_ll``, ``modeled``,
        ``v_min_pu``, ``v_max_pu``, ``max_model_error_pu``, ``n_violations`` and the voltage of
        every period (one column per period label).
    periods : DataFrame
        One row per period: ``period``, ``converged``, ``v_min_pu``, ``v_max_pu``,
        ``voltage_violations``, ``thermal_violations``, ``max_loading_pct``,
        ``max_model_error_pu``, ``substation_kw``.
    """

    certificate: ACCertificate
    nodes: pd.DataFrame
    periods: pd.DataFrame


def _command(text: str) -> None:
    try:
        dss.Text.Command(text)
    except Exception as exc:  # OpenDSSDirect raises DSSException
        raise FeederInputError(f"OpenDSS rejected {text!r}: {exc}") from exc


def _bus_spec(bus: str, phases: tuple[int, ...]) -> str:
    return bus + "".join(f".{p}" for p in phases)


def _add_new_der(der: NewDER) -> str:
    """Create the OpenDSS element of a new resource; returns its full name."""
    if der.bus.lower() not in {b.lower() for b in dss.Circuit.AllBusNames()}:
        raise FeederInputError(
            f"new {der.kind.value} {der.name!r}: bus {der.bus!r} is not in the OpenDSS circuit"
        )
    dss.Circuit.SetActiveBus(der.bus)
    kv_ln = float(dss.Bus.kVBase())
    n = len(der.phases)
    kv = kv_ln * np.sqrt(3.0) if n > 1 else kv_ln
    s_max = float(np.max(np.hypot(der.p_kw, der.q_kvar), initial=0.0))
    kva = max(float(der.kva), s_max * 1.001, 1e-3)
    name = f"{NEW_ELEMENT_PREFIX}{der.name}".replace(" ", "_").replace(".", "_")
    spec = _bus_spec(der.bus, der.phases)
    if der.kind is DERKind.PV:
        _command(
            f"New PVSystem.{name} phases={n} bus1={spec} kv={kv:.6f} kVA={kva:.6f} "
            f"Pmpp={kva:.6f} irradiance=1 %Pmpp=0 %cutin=0 %cutout=0 kvar=0"
        )
        return f"PVSystem.{name}"
    kwh = max(float(der.kwh), 1e-3)
    _command(
        f"New Storage.{name} phases={n} bus1={spec} kv={kv:.6f} kVA={kva:.6f} "
        f"kWrated={kva:.6f} kWhrated={kwh:.6f} %stored=50 %reserve=0 %IdlingkW=0 "
        "%EffCharge=100 %EffDischarge=100 dispmode=default"
    )
    return f"Storage.{name}"


def _set_der(full_name: str, kind: DERKind, p_kw: float, q_kvar: float, kva: float) -> None:
    name = full_name.split(".", 1)[1]
    if kind is DERKind.PV:
        _command(f"PVSystem.{name}.%Pmpp={100.0 * max(p_kw, 0.0) / kva:.8f}")
        _command(f"PVSystem.{name}.kvar={q_kvar:.6f}")
    else:
        _command(f"Storage.{name}.kW={p_kw:.6f}")
        _command(f"Storage.{name}.kvar={q_kvar:.6f}")


def _element_kva(full_name: str) -> float:
    dss.Text.Command(f"? {full_name}.kVA")
    return float(dss.Text.Result())


def _node_table() -> tuple[list[str], np.ndarray, np.ndarray]:
    """Node names (lower case), phase-node mask (1–3) and per-node base (V, line-to-neutral)."""
    names = [n.lower() for n in dss.Circuit.AllNodeNames()]
    base_of_bus: dict[str, float] = {}
    for bus in dss.Circuit.AllBusNames():
        dss.Circuit.SetActiveBus(bus)
        base_of_bus[bus.lower()] = float(dss.Bus.kVBase()) * 1000.0
    bus_of = [n.rsplit(".", 1)[0] for n in names]
    base = np.array([base_of_bus.get(b, 0.0) for b in bus_of])
    phase_node = np.array([n.rsplit(".", 1)[1] in ("1", "2", "3") for n in names])
    return names, phase_node, np.where(base > 0, base, np.nan)


def _thermal_mask() -> np.ndarray:
    names = [n.lower() for n in dss.PDElements.AllNames()]
    return np.array([n.startswith(_THERMAL_CLASSES) for n in names], dtype=bool)


def certify(
    feeder: Feeder,
    schedule: DecisionSchedule,
    *,
    v_lower: float = DEFAULT_V_LOWER,
    v_upper: float = DEFAULT_V_UPPER,
) -> CertificateRun:
    """Push a decision into OpenDSS, solve every period and report the AC certificate.

    Parameters
    ----------
    feeder : Feeder
        The source feeder (as loaded: its OpenDSS master is compiled, or a script is written
        for feeders from other sources).
    schedule : DecisionSchedule
        The decision per period.
    v_lower, v_upper : float
        Voltage band (p.u.).

    Returns
    -------
    CertificateRun

    Raises
    ------
    FeederInputError
        Unknown element or bus names in the schedule, or an OpenDSS error.
    """
    t0 = time.perf_counter()
    T = schedule.n_periods
    ensure_compiled(feeder)
    _command(f"Set maxiterations={MAX_ITERATIONS} maxcontroliter={MAX_ITERATIONS}")
    _command("Set mode=snapshot")
    _command("Solve")  # settle taps and capacitors as the import did
    _command("Set controlmode=off")
    new_elements = [(_add_new_der(d), d) for d in schedule.new_der]
    kvas = [_element_kva(full) for full, _ in new_elements]
    _check_names("Load", schedule.load_names, dss.Loads.AllNames())
    _check_names("PVSystem", schedule.pv_names, dss.PVsystems.AllNames())
    _check_names("Line", tuple(schedule.switch_closed), dss.Lines.AllNames())
    _check_names("Transformer", tuple(x for x, _ in schedule.taps), dss.Transformers.AllNames())
    pv_kva = {}
    for name in schedule.pv_names:
        dss.PVsystems.Name(name)
        pv_kva[name] = float(dss.PVsystems.Pmpp())

    names, phase_node, base = _node_table()
    node_names = [n for n, keep in zip(names, phase_node, strict=True) if keep]
    node_pos = {n: i for i, n in enumerate(node_names)}
    kv_ll = base[phase_node] * np.sqrt(3.0) / 1000.0
    math = schedule.model
    if math is not None:
        model_nodes = [n.lower() for n in math.node_names]
        take = np.array([node_pos.get(n, -1) for n in model_nodes])
        modeled = np.zeros(len(node_names), dtype=bool)
        modeled[take[take >= 0]] = True
    else:
        take = np.zeros(0, dtype=int)
        modeled = np.ones(len(node_names), dtype=bool)
    thermal = _thermal_mask()

    v_all = np.empty((len(node_names), T))
    err_nodes = np.full((len(node_names), T), np.nan)
    converged = np.zeros(T, dtype=bool)
    loading_max = np.zeros(T)
    n_thermal = np.zeros(T, dtype=int)
    substation_kw = np.zeros(T)
    for t in range(T):
        _push_period(schedule, t, new_elements, kvas, pv_kva)
        _command("Solve")
        converged[t] = bool(dss.Solution.Converged())
        mags = np.asarray(dss.Circuit.AllBusMagPu(), dtype=float)
        v_all[:, t] = mags[phase_node]
        pct = np.asarray(dss.PDElements.AllPctNorm(), dtype=float)
        if len(pct) == len(thermal):
            pct = pct[thermal]
        finite = pct[np.isfinite(pct)]
        loading_max[t] = float(finite.max()) if len(finite) else 0.0
        n_thermal[t] = int(np.sum(finite > 100.0))
        substation_kw[t] = -float(dss.Circuit.TotalPower()[0])
        if math is not None and np.all(take >= 0):
            # modeled nodes in the model's meaning: its base, |V_LL|/√3 behind delta windings
            v_frame = _ac_in_model_frame(math, take)
            v_all[take, t] = v_frame
            if schedule.model_v_pu is not None:
                err_nodes[take, t] = _model_error(math, schedule.model_v_pu[:, t], take)
    v_checked = v_all[modeled]
    outside = (v_checked < v_lower - VOLTAGE_TOLERANCE_PU) | (
        v_checked > v_upper + VOLTAGE_TOLERANCE_PU
    )
    outside_all = (v_all < v_lower - VOLTAGE_TOLERANCE_PU) | (
        v_all > v_upper + VOLTAGE_TOLERANCE_PU
    )
    has_err = np.isfinite(err_nodes).any()
    if has_err:
        flat = int(np.nanargmax(err_nodes))
        worst_node, worst_t = divmod(flat, T)
        max_err = float(err_nodes.flat[flat])
        worst_name = node_names[worst_node]
    else:
        max_err, worst_name, worst_t = float("nan"), "", -1
    certificate = ACCertificate(
        n_periods=T,
        converged=bool(converged.all()),
        ac_min_voltage_pu=float(np.nanmin(v_checked)) if v_checked.size else float("nan"),
        ac_max_voltage_pu=float(np.nanmax(v_checked)) if v_checked.size else float("nan"),
        ac_voltage_violations=int(outside.sum()),
        ac_voltage_violations_all_nodes=int(outside_all.sum()),
        ac_thermal_violations=int(n_thermal.sum()),
        ac_max_loading_pct=float(loading_max.max()),
        ac_max_model_error_pu=max_err,
        ac_worst_model_error_node=worst_name,
        ac_worst_model_error_period=int(worst_t),
        v_lower=float(v_lower),
        v_upper=float(v_upper),
        n_checked_nodes=int(modeled.sum()),
        n_new_pv=sum(d.kind is DERKind.PV for d in schedule.new_der),
        n_new_storage=sum(d.kind is DERKind.STORAGE for d in schedule.new_der),
        seconds=time.perf_counter() - t0,
    )
    labels = schedule.labels
    nodes = pd.DataFrame(
        {
            "node": node_names,
            "bus": [n.rsplit(".", 1)[0] for n in node_names],
            "phase": [int(n.rsplit(".", 1)[1]) for n in node_names],
            "kv_base_ll": kv_ll,
            "modeled": modeled,
            "v_min_pu": v_all.min(axis=1),
            "v_max_pu": v_all.max(axis=1),
            "max_model_error_pu": _nanmax_rows(err_nodes),
            "n_violations": outside_all.sum(axis=1),
        }
    )
    nodes = pd.concat(
        [nodes, pd.DataFrame(v_all, columns=[f"v_{label}" for label in labels])], axis=1
    )
    periods = pd.DataFrame(
        {
            "period": list(labels),
            "converged": converged,
            "v_min_pu": v_checked.min(axis=0) if v_checked.size else np.nan,
            "v_max_pu": v_checked.max(axis=0) if v_checked.size else np.nan,
            "voltage_violations": outside.sum(axis=0),
            "thermal_violations": n_thermal,
            "max_loading_pct": loading_max,
            "max_model_error_pu": _nanmax_rows(err_nodes.T),
            "substation_kw": substation_kw,
        }
    )
    return CertificateRun(certificate=certificate, nodes=nodes, periods=periods)


def _nanmax_rows(a: np.ndarray) -> np.ndarray:
    out = np.full(a.shape[0], np.nan)
    ok = np.isfinite(a).any(axis=1)
    out[ok] = np.nanmax(a[ok], axis=1)
    return out


def _check_names(cls: str, wanted, existing) -> None:
    have = {n.lower() for n in existing}
    unknown = sorted({str(n) for n in wanted if str(n).lower() not in have})
    if unknown:
        raise FeederInputError(
            f"AC certificate: {cls} element(s) {unknown[:10]} are not in the OpenDSS circuit"
        )


def _push_period(
    schedule: DecisionSchedule,
    t: int,
    new_elements: list[tuple[str, NewDER]],
    kvas: list[float],
    pv_kva: dict[str, float],
) -> None:
    """Write period ``t`` of the schedule into the circuit (controls already off)."""
    if schedule.load_kw is not None:
        kvar = schedule.load_kvar
        for i, name in enumerate(schedule.load_names):
            dss.Loads.Name(name)
            dss.Loads.kW(float(schedule.load_kw[i, t]))
            if kvar is not None:
                dss.Loads.kvar(float(kvar[i, t]))
    if schedule.pv_kw is not None:
        for i, name in enumerate(schedule.pv_names):
            pmpp = pv_kva[name]
            _command(f"PVSystem.{name}.irradiance=1")
            pct = 100.0 * float(schedule.pv_kw[i, t]) / pmpp if pmpp > 0 else 0.0
            _command(f"PVSystem.{name}.%Pmpp={pct:.8f}")
            if schedule.pv_kvar is not None:
                _command(f"PVSystem.{name}.kvar={float(schedule.pv_kvar[i, t]):.6f}")
    for (full, der), kva in zip(new_elements, kvas, strict=True):
        _set_der(full, der.kind, float(der.p_kw[t]), float(der.q_kvar[t]), kva)
    for (xf, winding), taps in schedule.taps.items():
        _command(f"Transformer.{xf}.wdg={int(winding)}")
        _command(f"Transformer.{xf}.tap={float(np.asarray(taps)[t]):.6f}")
    for name, states in schedule.switch_closed.items():
        if bool(np.asarray(states)[t]):
            _command(f"Line.{name}.enabled=yes")
            _command(f"Close Line.{name} term=1")
            _command(f"Close Line.{name} term=2")
        else:
            _command(f"Open Line.{name} term=1")
            _command(f"Open Line.{name} term=2")


def _ac_in_model_frame(math: MathFeeder, take: np.ndarray) -> np.ndarray:
    """AC magnitudes of the model's nodes as the model means them (base, delta pairs)."""
    from gridrecourse.evaluation.validation import ac_model_frame

    mags = np.asarray(dss.Circuit.AllBusMagPu(), dtype=float)
    volts = np.asarray(dss.Circuit.AllBusVolts(), dtype=float)
    _, phase_node, base = _node_table_cached()
    phasor = (volts[0::2] + 1j * volts[1::2]) / base
    scale = _scale_cached(math)
    return ac_model_frame(mags[phase_node][take] * scale, phasor[phase_node][take] * scale, math)


def _model_error(math: MathFeeder, v_model: np.ndarray, take: np.ndarray) -> np.ndarray:
    """``|V_model − V_AC|`` per model node (delta-fed nodes on ``|V_LL|/√3``)."""
    from gridrecourse.evaluation.validation import _compare

    mags = np.asarray(dss.Circuit.AllBusMagPu(), dtype=float)
    volts = np.asarray(dss.Circuit.AllBusVolts(), dtype=float)
    _, phase_node, base = _node_table_cached()
    phasor = (volts[0::2] + 1j * volts[1::2]) / base
    scale = _scale_cached(math)
    v_ac, ph_ac = mags[phase_node][take] * scale, phasor[phase_node][take] * scale
    return _compare(SimpleNamespace(v_pu=v_model), v_ac, ph_ac, math)


_SCALE_CACHE: list[tuple[MathFeeder, str, np.ndarray]] = []


def _scale_cached(math: MathFeeder) -> np.ndarray:
    """:func:`~gridrecourse.evaluation.validation.ac_base_scale`, once per model and circuit."""
    from gridrecourse.evaluation.validation import ac_base_scale

    circuit = f"{dss.Circuit.Name()}:{dss.Circuit.NumNodes()}"
    if not _SCALE_CACHE or _SCALE_CACHE[0][0] is not math or _SCALE_CACHE[0][1] != circuit:
        _SCALE_CACHE[:] = [(math, circuit, ac_base_scale(math))]
    return _SCALE_CACHE[0][2]


_NODE_CACHE: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}


def _node_table_cached() -> tuple[list[str], np.ndarray, np.ndarray]:
    key = f"{dss.Circuit.Name()}:{dss.Circuit.NumNodes()}"
    if key not in _NODE_CACHE:
        _NODE_CACHE.clear()
        _NODE_CACHE[key] = _node_table()
    return _NODE_CACHE[key]


# ----------------------------------------------------------------------------- schedules


def _math_taps(math: MathFeeder, per_period: np.ndarray | None, T: int) -> dict:
    reg = math.regulators
    taps = per_period if per_period is not None else np.repeat(reg.tap[:, None], T, axis=1)
    return {
        (str(x), int(w)): np.asarray(taps[i], dtype=float)
        for i, (x, w) in enumerate(zip(reg.transformer_names, reg.winding, strict=True))
    }


def _bus_phases(math: MathFeeder, bus: str) -> tuple[int, ...]:
    b = math.bus_names.index(bus)
    return tuple(int(p) for p in math.node_phase[(math.node_bus == b) & ~math.is_root])


def opf_schedule(opf: OPFModel, result: OPFResult) -> DecisionSchedule:
    """The OPF's decision per hour: loads at their profile, PV dispatch, taps, switch states.

    Feeders with PV systems get the PV dispatch written to them; on feeders without, the OPF
    adds PV at the loads (``pv_penetration``), and its dispatch is netted into those loads (same
    node and connection as in the model).
    """
    math, config = opf.math, opf.config
    T = config.n_periods
    load_kw = np.outer(math.load_kw, config.load_profile)
    load_kvar = np.outer(math.load_kvar, config.load_profile)
    pv_at_loads = not len(math.pv_names)
    if pv_at_loads:
        load_kw = load_kw - result.pv_kw
        load_kvar = load_kvar - result.pv_kvar
    reg = math.regulators
    per_period = None
    if result.taps is not None:
        numbers = np.array([result.taps[n] for n in reg.names]).reshape(reg.n_regulators, T)
        per_period = 1.0 + numbers * reg.tap_step[:, None]
    switches = {}
    if result.switch_states is not None:
        switches = {n: np.asarray(v, dtype=bool) for n, v in result.switch_states.items()}
    return DecisionSchedule(
        n_periods=T,
        load_names=tuple(math.load_names),
        load_kw=load_kw,
        load_kvar=load_kvar,
        pv_names=() if pv_at_loads else tuple(math.pv_names),
        pv_kw=None if pv_at_loads else np.asarray(result.pv_kw),
        pv_kvar=None if pv_at_loads else np.asarray(result.pv_kvar),
        taps=_math_taps(math, per_period, T),
        switch_closed=switches,
        model=math,
        model_v_pu=np.asarray(result.v_pu),
        period_labels=tuple(f"h{h:02d}" for h in range(T)),
    )


def check_opf_in_ac(feeder: Feeder, opf: OPFModel, result: OPFResult) -> OPFACCheck:
    """Replay an OPF solution in OpenDSS (controls off) and compare its voltages.

    The :func:`certify` run of :func:`opf_schedule`, summarized as an
    :class:`~gridrecourse.problems.opf.OPFACCheck`.
    """
    from gridrecourse.problems.opf import OPFACCheck

    run = certify(feeder, opf_schedule(opf, result))
    err = run.periods["max_model_error_pu"].to_numpy()
    cert = run.certificate
    return OPFACCheck(
        max_abs_voltage_error_pu=cert.ac_max_model_error_pu,
        max_abs_voltage_error_by_period=err,
        worst_node=cert.ac_worst_model_error_node,
        worst_period=cert.ac_worst_model_error_period,
        ac_v_min_pu=run.periods["v_min_pu"].to_numpy(),
        ac_v_max_pu=run.periods["v_max_pu"].to_numpy(),
        converged=cert.converged,
    )


def siting_schedule(
    problem: PVSitingProblem, decision: SitingDecision, scenarios: np.ndarray | None = None
) -> DecisionSchedule:
    """PV siting: one period per scenario, the sited PV at its available output.

    Each load gets its site's load multiplier; each sited bus a new ``PVSystem`` over the bus's
    phases producing ``kW × PV multiplier`` (at the configured power factor). The recourse may
    curtail; full output is the worst case for over-voltage. The model voltages are
    LinDist3Flow's at the same injections and the model's root voltages and taps.
    """
    from gridrecourse.physics.lindistflow import LinDist3Flow

    math, scen = problem.math, problem.scenarios
    idx = np.arange(scen.load_multiplier.shape[0]) if scenarios is None else np.asarray(scenarios)
    T = len(idx)
    col_of = {name: k for k, name in enumerate(scen.site_names)}
    load_node = np.asarray(abs(math.load_map).argmax(axis=0)).ravel()
    load_bus = [math.bus_names[b] for b in math.node_bus[load_node]]
    load_cols = np.array([col_of.get(b, -1) for b in load_bus])
    mult = np.ones((len(math.load_names), T))
    has = load_cols >= 0
    mult[has] = scen.load_multiplier[np.ix_(idx, load_cols[has])].T
    load_kw = math.load_kw[:, None] * mult
    load_kvar = math.load_kvar[:, None] * mult
    pf = problem.config.power_factor
    tan_phi = float(np.tan(np.arccos(pf))) if pf < 1 else 0.0
    new = []
    kw = np.asarray(decision.kw, dtype=float)
    for i, bus in enumerate(decision.site_names):
        if kw[i] <= 0:
            continue
        p = kw[i] * scen.pv_multiplier[idx, col_of[bus]]
        new.append(
            NewDER(
                name=f"pv_{bus}",
                kind=DERKind.PV,
                bus=bus,
                phases=_bus_phases(math, bus),
                kva=float(kw[i]),
                p_kw=np.asarray(p, dtype=float),
                q_kvar=np.asarray(p * tan_phi, dtype=float),
            )
        )
    # LinDist3Flow at the same injections
    s_load = math.load_map @ (load_kw + 1j * load_kvar)
    s_fixed = -(
        math.gen_map @ (math.gen_kw + 1j * math.gen_kvar)
        + math.storage_map @ (math.storage_kw + 1j * math.storage_kvar)
        + math.pv_map @ (math.pv_p_kw + 1j * math.pv_q_kvar)
    )
    s = np.asarray(s_load) + np.asarray(s_fixed)[:, None]
    for der in new:
        nodes = _der_nodes(math, der)
        s[nodes] -= (der.p_kw + 1j * der.q_kvar)[None, :] / len(nodes)
    sol = LinDist3Flow(math).solve(s.real / math.s_base_kva, s.imag / math.s_base_kva)
    return DecisionSchedule(
        n_periods=T,
        load_names=tuple(math.load_names),
        load_kw=load_kw,
        load_kvar=load_kvar,
        new_der=tuple(new),
        taps=_math_taps(math, None, T),
        model=math,
        model_v_pu=np.asarray(sol.v_pu).reshape(math.n_nodes, T),
        period_labels=tuple(f"s{int(k):03d}" for k in idx),
    )


def _der_nodes(math: MathFeeder, der: NewDER) -> np.ndarray:
    b = math.bus_names.index(der.bus)
    mask = (math.node_bus == b) & np.isin(math.node_phase, der.phases) & ~math.is_root
    return np.flatnonzero(mask)


def expansion_schedule(
    problem: StorageExpansionProblem,
    solution: StorageExpansionSolution,
    load_kw: np.ndarray,
    pv_kw: np.ndarray | None = None,
) -> DecisionSchedule:
    """Battery expansion: the sized batteries' dispatch on the realized day.

    Parameters
    ----------
    problem : StorageExpansionProblem
    solution : StorageExpansionSolution
        A dispatch of the capacities (e.g. :meth:`StorageExpansionProblem.evaluate` on the
        realized day), with its model voltages.
    load_kw, pv_kw : ndarray, shape (τ, n_sites)
        Load and PV per load site (kW) of that day.

    Each load is scaled by its site's ``load / nominal``; site PV becomes a new ``PVSystem``
    (unity power factor, over the bus's phases); each battery with capacity a new ``Storage``
    (``dispatch_kw`` is charging-positive, so the OpenDSS output is its negative).
    """
    math = problem.math
    load_site = np.asarray(load_kw, dtype=float)
    T = load_site.shape[0]
    site_index = {b: k for k, b in enumerate(problem.load_sites)}
    load_node = np.asarray(abs(math.load_map).argmax(axis=0)).ravel()
    load_bus = [math.bus_names[b] for b in math.node_bus[load_node]]
    cols = np.array([site_index.get(b, -1) for b in load_bus])
    scale = np.ones((len(math.load_names), T))
    has = cols >= 0
    nominal = problem.nominal_load_kw
    scale[has] = (load_site[:, cols[has]] / nominal[cols[has]]).T
    new: list[NewDER] = []
    if pv_kw is not None:
        pv = np.asarray(pv_kw, dtype=float)
        for k, bus in enumerate(problem.load_sites):
            if np.any(pv[:, k] > 0):
                new.append(
                    NewDER(
                        f"pv_{bus}",
                        DERKind.PV,
                        bus,
                        _bus_phases(math, bus),
                        float(pv[:, k].max()),
                        pv[:, k].copy(),
                        np.zeros(T),
                    )
                )
    dispatch = np.asarray(solution.dispatch_kw, dtype=float)
    for j, bus in enumerate(solution.candidate_buses):
        cap = float(solution.capacity_kwh[bus])
        if cap <= 0:
            continue
        p = -dispatch[:, j]
        new.append(
            NewDER(
                f"bess_{bus}",
                DERKind.STORAGE,
                bus,
                _bus_phases(math, bus),
                float(np.max(np.abs(p), initial=0.0)),
                p,
                np.zeros(T),
                kwh=cap,
            )
        )
    return DecisionSchedule(
        n_periods=T,
        load_names=tuple(math.load_names),
        load_kw=math.load_kw[:, None] * scale,
        load_kvar=math.load_kvar[:, None] * scale,
        new_der=tuple(new),
        taps=_math_taps(math, None, T),
        model=math,
        model_v_pu=np.asarray(solution.v_pu),
        period_labels=tuple(f"h{h:02d}" for h in range(T)),
    )
