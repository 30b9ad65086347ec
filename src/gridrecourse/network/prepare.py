"""The one feeder pipeline: feeder spec + operating point → :class:`MathFeeder`.

Every command and problem goes from what the user names (a built-in feeder, an OpenDSS master,
a JSON file or a :class:`Feeder`) to the per-unit model the same way:

1. resolve the spec (:func:`gridrecourse.network.loading.resolve_feeder_spec`; OpenDSS masters
   are compiled and their snapshot solved with controls active, so taps and capacitor states are
   OpenDSS's);
2. fold split-phase secondaries (:func:`~gridrecourse.network.reduce.fold_split_phase_secondaries`);
3. if the network is meshed above the distribution level (IEEE 9500's 69 kV loop), root it at
   the substation secondaries (:func:`~gridrecourse.network.reduce.root_at_substations`) with
   the root voltages chosen by :attr:`OperatingPoint.root_voltages`;
4. build the :class:`MathFeeder` at the operating point's taps and switch states
   (:func:`~gridrecourse.network.math_model.build_math_feeder`).

The defaults (:class:`OperatingPoint` ``()``) are the source model's own operating point: taps
as OpenDSS settled them, switches in their normal state, substation-cut root voltages from the
OpenDSS snapshot. This is what ``opf``, ``expand`` and ``validate`` use; ``info`` and PV siting
use nominal root voltages, and the ``siting`` command neutral taps (each call site states its
operating point).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from gridrecourse.errors import FeederInputError, MeshedNetworkError
from gridrecourse.network.components import Feeder
from gridrecourse.network.loading import FeederSpec, resolve_feeder_spec
from gridrecourse.network.math_model import DEFAULT_S_BASE_KVA, MathFeeder, build_math_feeder
from gridrecourse.network.reduce import (
    fold_split_phase_secondaries,
    root_at_substations,
    substation_transformers,
)


class TapMode(str, Enum):
    """Regulator taps of the linear model (METHODS §1.2)."""

    #: the taps of the source model (for OpenDSS: where its controls settled in the snapshot)
    OPENDSS = "opendss"
    #: every regulator at tap 1.0 (regulators bypassed; one voltage base as in paper C)
    NEUTRAL = "neutral"


class SwitchMode(str, Enum):
    """Switch states of the linear model (METHODS §1.3)."""

    #: the normal states of the source model; open switches are dropped
    NORMAL = "normal"
    #: every switch kept as decision data (:attr:`MathFeeder.switches`, ties kept)
    AS_DECISIONS = "as_decisions"


class RootVoltages(str, Enum):
    """Root voltages where the feeder is cut at substation secondaries (IEEE 9500)."""

    #: the OpenDSS AC snapshot's voltages at the cut (OpenDSS feeders; others get 1.0 p.u.)
    SNAPSHOT = "snapshot"
    #: 1.0 p.u. on every phase of the cut
    NOMINAL = "nominal"


@dataclass(frozen=True)
class OperatingPoint:
    """Where the linear model is built.

    Attributes
    ----------
    taps : TapMode or Mapping[str, float]
        :class:`TapMode`, or explicit taps ``{regulator (RegControl) name: tap p.u.}``; a
        regulator not in the mapping keeps its source tap. Default: the source model's taps.
    switches : SwitchMode or Mapping[str, bool]
        :class:`SwitchMode`, or explicit states ``{switch name: closed}`` (others normal; the
        result must be radial). Default: normal states.
    root_voltages : RootVoltages
        Root voltages at a substation cut (only used by feeders meshed above distribution).
        Default: from the OpenDSS snapshot.
    s_base_kva : float
        Power base per phase (kVA).
    """

    taps: TapMode | Mapping[str, float] = TapMode.OPENDSS
    switches: SwitchMode | Mapping[str, bool] = SwitchMode.NORMAL
    root_voltages: RootVoltages = RootVoltages.SNAPSHOT
    s_base_kva: float = DEFAULT_S_BASE_KVA

    def __post_init__(self) -> None:
        # enum values given as plain strings ("neutral", "as_decisions") become the enums
        try:
            if not isinstance(self.taps, Mapping):
                object.__setattr__(self, "taps", TapMode(self.taps))
            if not isinstance(self.switches, Mapping):
                object.__setattr__(self, "switches", SwitchMode(self.switches))
            object.__setattr__(self, "root_voltages", RootVoltages(self.root_voltages))
        except ValueError as exc:
            raise FeederInputError(f"operating point: {exc}") from exc
        if not self.s_base_kva > 0:
            raise FeederInputError(
                f"operating point: s_base_kva must be > 0, got {self.s_base_kva}"
            )


@dataclass(frozen=True, eq=False)
class PreparedFeeder:
    """The pipeline's output with the feeders it went through.

    Attributes
    ----------
    source : Feeder
        The feeder as loaded (engineering model of the spec).
    feeder : Feeder
        After the reductions for the linear model (its ``reductions`` say which).
    math : MathFeeder
        The per-unit model at the operating point.
    operating_point : OperatingPoint
    """

    source: Feeder
    feeder: Feeder
    math: MathFeeder
    operating_point: OperatingPoint


def _engine_root_voltages(feeder: Feeder, buses: list[str]) -> dict[str, tuple[float, ...]]:
    """Per-phase voltage magnitudes (p.u.) of ``buses`` in OpenDSS's solved snapshot.

    Reads the circuit in the OpenDSS engine, recompiling ``feeder.source_path`` when the engine
    holds another circuit. The values are those of
    :func:`gridrecourse.evaluation.ac_check.read_snapshot` (``Circuit.AllBusMagPu``).
    """
    import opendssdirect as dss

    from gridrecourse.network.io_opendss import compile_opendss

    if dss.Circuit.Name().lower() != feeder.name.lower():
        if not feeder.source_path or not Path(feeder.source_path).is_file():
            warnings.warn(
                f"feeder {feeder.name!r}: no OpenDSS snapshot available; substation-cut root "
                "voltages set to 1.0 p.u.",
                UserWarning,
                stacklevel=3,
            )
            return {}
        compile_opendss(feeder.source_path)
    names = [n.lower() for n in dss.Circuit.AllNodeNames()]
    magnitude = dict(zip(names, dss.Circuit.AllBusMagPu(), strict=True))
    out: dict[str, tuple[float, ...]] = {}
    for name in buses:
        keys = [f"{name}.{p}".lower() for p in feeder.bus(name).phases]
        if all(k in magnitude for k in keys):
            out[name] = tuple(float(magnitude[k]) for k in keys)
    return out


def _tap_map(feeder: Feeder, taps: TapMode | Mapping[str, float]) -> dict | None:
    """``{(transformer, winding): tap}`` for :func:`build_math_feeder` (``None``: source taps)."""
    if not isinstance(taps, Mapping):
        if TapMode(taps) is TapMode.OPENDSS:
            return None
        return {(r.transformer, r.winding): 1.0 for r in feeder.regulators}
    regs = {r.name: r for r in feeder.regulators}
    unknown = sorted(set(taps) - set(regs))
    if unknown:
        raise FeederInputError(
            f"feeder {feeder.name!r}: unknown regulator(s) {unknown} in the tap settings; "
            f"regulators are {sorted(regs)}"
        )
    out = {}
    for name, tap in taps.items():
        reg = regs[name]
        if not reg.tap_min - 1e-9 <= float(tap) <= reg.tap_max + 1e-9:
            raise FeederInputError(
                f"regulator {name!r}: tap {tap} outside its range [{reg.tap_min}, {reg.tap_max}]"
            )
        out[(reg.transformer, reg.winding)] = float(tap)
    return out


def _switch_states(
    feeder: Feeder, switches: SwitchMode | Mapping[str, bool]
) -> tuple[dict[str, bool] | None, bool]:
    """``(switch_states, keep_switches)`` for :func:`build_math_feeder`."""
    if not isinstance(switches, Mapping):
        return None, SwitchMode(switches) is SwitchMode.AS_DECISIONS
    known = {s.name for s in feeder.switches}
    unknown = sorted(set(switches) - known)
    if unknown:
        raise FeederInputError(
            f"feeder {feeder.name!r}: unknown switch(es) {unknown}; switches are {sorted(known)}"
        )
    return {name: bool(closed) for name, closed in switches.items()}, False


def prepare_feeder(
    spec: Feeder | FeederSpec, operating_point: OperatingPoint | None = None
) -> PreparedFeeder:
    """Resolve, reduce and build the per-unit model of a feeder (module docstring, steps 1–4).

    Parameters
    ----------
    spec : Feeder, str or Path
        A :class:`Feeder`, a built-in feeder name, an OpenDSS master or a feeder JSON.
    operating_point : OperatingPoint, optional
        Taps, switch states and root voltages; default ``OperatingPoint()`` (the source model's
        taps, normal switch states, snapshot root voltages).

    Returns
    -------
    PreparedFeeder

    Raises
    ------
    MeshedNetworkError
        The network is meshed below the substation (at the chosen switch states).
    IslandedBusError
        A bus with load or generation has no path to a source.
    FeederInputError
        Unknown regulator or switch names, taps out of range, unsupported elements.
    """
    op = operating_point or OperatingPoint()
    source = spec if isinstance(spec, Feeder) else resolve_feeder_spec(spec)
    feeder = fold_split_phase_secondaries(source)
    switch_states, keep = _switch_states(feeder, op.switches)

    def build(f: Feeder) -> MathFeeder:
        return build_math_feeder(
            f,
            switch_states=switch_states,
            taps=_tap_map(f, op.taps),
            s_base_kva=op.s_base_kva,
            keep_switches=keep,
        )

    try:
        math = build(feeder)
    except MeshedNetworkError:
        if not substation_transformers(feeder) or _radial_in_normal_state(feeder):
            raise
        v_pu = None
        if op.root_voltages is RootVoltages.SNAPSHOT and source.source_kind == "opendss":
            buses = [min(x.windings, key=lambda w: w.kv).bus for x in _substations(feeder)]
            v_pu = _engine_root_voltages(feeder, buses)
        feeder = root_at_substations(feeder, v_pu)
        math = build(feeder)
    return PreparedFeeder(source=source, feeder=feeder, math=math, operating_point=op)


def prepare_math_feeder(
    spec: Feeder | FeederSpec, operating_point: OperatingPoint | None = None
) -> MathFeeder:
    """:func:`prepare_feeder` returning only the :class:`MathFeeder`."""
    return prepare_feeder(spec, operating_point).math


def _radial_in_normal_state(feeder: Feeder) -> bool:
    """Whether the feeder builds at its normal switch states (then a mesh is the caller's)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build_math_feeder(feeder)
    except MeshedNetworkError:
        return False
    return True


def _substations(feeder: Feeder) -> list:
    """Substation transformers (stepping down from subtransmission), in feeder order."""
    names = set(substation_transformers(feeder))
    return [x for x in feeder.transformers if x.name in names]
