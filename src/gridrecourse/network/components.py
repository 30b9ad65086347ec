"""Engineering-layer components of a three-phase distribution feeder.

Everything here is in engineering units (kV, kW, kvar, kVA, ohm, siemens) and keeps the names of
the source model, so a feeder can be read back by a person and round-tripped through JSON.
Phases are OpenDSS node numbers: 1 = a, 2 = b, 3 = c. A component's ``phases`` tuple lists the
bus nodes its phase conductors attach to, in conductor order.

Connection conventions (mapped to the per-phase model in :mod:`gridrecourse.network.math_model`):

* ``WYE`` shunt elements inject into the listed phases, split equally when several phases are
  listed (the OpenDSS convention for a multi-phase wye load).
* ``DELTA`` shunt elements connect phase pairs. A 1-phase delta element on phases (1, 2) is the
  branch a-b; a 3-phase delta element has branches ab, bc, ca with a third of the power each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

PHASE_LETTERS: dict[int, str] = {1: "a", 2: "b", 3: "c"}


class Connection(str, Enum):
    """Winding or shunt-element connection."""

    WYE = "wye"
    DELTA = "delta"


class LoadModel(int, Enum):
    """OpenDSS load models that gridrecourse maps (``Load.model``).

    LinDist3Flow is a constant-power model; the others are evaluated at the linear model's
    voltage by the fixed-point correction in :mod:`gridrecourse.physics.lindistflow`.
    """

    CONSTANT_PQ = 1
    CONSTANT_Z = 2
    MOTOR = 3
    CVR = 4
    CONSTANT_I = 5
    CONSTANT_P_FIXED_Q = 6
    CONSTANT_P_FIXED_X = 7
    ZIP = 8


@dataclass(frozen=True)
class Bus:
    """A bus with its energized phases, nominal line-to-neutral base voltage and coordinates."""

    name: str
    phases: tuple[int, ...]
    kv_base_ln: float
    x: float | None = None
    y: float | None = None


@dataclass(frozen=True, eq=False)
class Line:
    """A series branch with phase-coupled impedance.

    Attributes
    ----------
    z_ohm : complex ndarray, shape (n, n)
        Total series impedance matrix (ohm), Kron-reduced to the phase conductors.
    y_shunt_siemens : complex ndarray, shape (n, n)
        Total shunt admittance (siemens); ignored by LinDist3Flow, kept for the AC model.
    norm_amps : float
        Normal (thermal) ampacity per phase (A); ``inf`` when not given.
    """

    name: str
    bus1: str
    bus2: str
    phases1: tuple[int, ...]
    phases2: tuple[int, ...]
    z_ohm: np.ndarray
    y_shunt_siemens: np.ndarray
    norm_amps: float = float("inf")
    emerg_amps: float = float("inf")
    length_km: float = 0.0


@dataclass(frozen=True)
class Switch:
    """A switchable zero-impedance branch with its normal state (``closed``)."""

    name: str
    bus1: str
    bus2: str
    phases1: tuple[int, ...]
    phases2: tuple[int, ...]
    closed: bool
    norm_amps: float = float("inf")


@dataclass(frozen=True)
class Winding:
    """One transformer winding.

    ``kv`` follows OpenDSS: line-to-line for 2- and 3-phase windings and for delta windings,
    the winding voltage for single-phase windings. ``tap`` is per unit of ``kv``.
    """

    bus: str
    phases: tuple[int, ...]
    connection: Connection
    kv: float
    kva: float
    r_pct: float
    tap: float = 1.0


@dataclass(frozen=True)
class Transformer:
    """A transformer with two or three windings.

    Attributes
    ----------
    x_pct : tuple of float
        Leakage reactances in percent on the winding-1 kVA base: (XHL,) for two windings,
        (XHL, XHT, XLT) for three.
    """

    name: str
    n_phases: int
    windings: tuple[Winding, ...]
    x_pct: tuple[float, ...]

    @property
    def is_center_tapped(self) -> bool:
        """True for split-phase service transformers (1 phase, windings 2 and 3 on one bus)."""
        return (
            self.n_phases == 1
            and len(self.windings) == 3
            and self.windings[1].bus == self.windings[2].bus
        )


@dataclass(frozen=True)
class Regulator:
    """Tap control of a transformer winding (OpenDSS RegControl).

    Taps are per unit of the winding voltage; ``n_steps`` steps span ``[tap_min, tap_max]``.
    The current tap lives in the controlled :class:`Winding`.
    """

    name: str
    transformer: str
    winding: int
    tap_min: float
    tap_max: float
    n_steps: int
    vreg: float
    band: float
    pt_ratio: float
    enabled: bool = True

    @property
    def tap_step(self) -> float:
        """Per-unit change of one tap step."""
        return (self.tap_max - self.tap_min) / self.n_steps


@dataclass(frozen=True)
class Capacitor:
    """Shunt capacitor bank; ``kvar`` is the total rating at ``kv`` with all steps closed."""

    name: str
    bus: str
    phases: tuple[int, ...]
    connection: Connection
    kvar: float
    kv: float
    steps_closed: float = 1.0


@dataclass(frozen=True)
class Load:
    """A load. ``kw``/``kvar`` are totals over its phases at rated voltage ``kv``."""

    name: str
    bus: str
    phases: tuple[int, ...]
    connection: Connection
    kw: float
    kvar: float
    kv: float
    model: int = LoadModel.CONSTANT_PQ
    zipv: tuple[float, ...] = ()


@dataclass(frozen=True)
class PVSystem:
    """A PV system. ``p_kw`` is its output at the imported operating point."""

    name: str
    bus: str
    phases: tuple[int, ...]
    connection: Connection
    kva: float
    pmpp_kw: float
    p_kw: float
    q_kvar: float
    kv: float


@dataclass(frozen=True)
class Generator:
    """A dispatchable generator at its imported dispatch (``kw``, ``kvar``)."""

    name: str
    bus: str
    phases: tuple[int, ...]
    connection: Connection
    kw: float
    kvar: float
    kva: float
    kv: float


@dataclass(frozen=True)
class Storage:
    """A battery. ``kw`` is its imported dispatch (positive = discharging)."""

    name: str
    bus: str
    phases: tuple[int, ...]
    connection: Connection
    kw_rated: float
    kwh_rated: float
    kva: float
    kw: float
    kvar: float
    kv: float
    soc_pct: float = 50.0


@dataclass(frozen=True)
class Root:
    """A voltage reference: the substation bus (or a cut point) with fixed phase voltages."""

    bus: str
    v_pu: tuple[float, ...]
    angle_deg: tuple[float, ...] = (0.0, -120.0, 120.0)


@dataclass(frozen=True)
class ReductionReport:
    """What a reduction changed, for the record (counts before/after)."""

    description: str
    buses_before: int
    buses_after: int
    nodes_before: int
    nodes_after: int
    branches_before: int
    branches_after: int
    folded_buses: tuple[tuple[str, str, int], ...] = ()
    """(folded bus, primary bus, primary phase) for every bus a reduction folded away."""


@dataclass(frozen=True, eq=False)
class Feeder:
    """A distribution feeder in engineering units.

    Build one with :func:`gridrecourse.network.load_feeder` (built-in name, OpenDSS master, or
    JSON) or the importers in :mod:`gridrecourse.network`. A feeder is immutable: reductions
    return a new feeder.
    """

    name: str
    buses: tuple[Bus, ...]
    roots: tuple[Root, ...]
    lines: tuple[Line, ...] = ()
    switches: tuple[Switch, ...] = ()
    transformers: tuple[Transformer, ...] = ()
    regulators: tuple[Regulator, ...] = ()
    capacitors: tuple[Capacitor, ...] = ()
    loads: tuple[Load, ...] = ()
    pv_systems: tuple[PVSystem, ...] = ()
    generators: tuple[Generator, ...] = ()
    storage: tuple[Storage, ...] = ()
    source_path: str | None = None
    source_kind: str = "unknown"
    frequency_hz: float = 60.0
    reductions: tuple[ReductionReport, ...] = field(default=())

    @property
    def n_buses(self) -> int:
        """Number of buses."""
        return len(self.buses)

    @property
    def n_nodes(self) -> int:
        """Number of (bus, phase) nodes."""
        return sum(len(b.phases) for b in self.buses)

    @property
    def n_branches(self) -> int:
        """Lines, switches and transformers (each counted once)."""
        return len(self.lines) + len(self.switches) + len(self.transformers)

    def bus(self, name: str) -> Bus:
        """Return the bus called ``name`` (raises ``KeyError`` naming it if absent)."""
        for b in self.buses:
            if b.name == name:
                return b
        raise KeyError(f"feeder {self.name!r} has no bus {name!r}")

    def summary(self) -> dict[str, int | str]:
        """Element counts, for ``gridrecourse info``."""
        return {
            "feeder": self.name,
            "source_kind": self.source_kind,
            "n_buses": self.n_buses,
            "n_nodes": self.n_nodes,
            "n_branches": self.n_branches,
            "n_lines": len(self.lines),
            "n_switches": len(self.switches),
            "n_open_switches": sum(not s.closed for s in self.switches),
            "n_transformers": len(self.transformers),
            "n_regulators": len(self.regulators),
            "n_capacitors": len(self.capacitors),
            "n_loads": len(self.loads),
            "n_pv_systems": len(self.pv_systems),
            "n_generators": len(self.generators),
            "n_storage": len(self.storage),
            "n_roots": len(self.roots),
        }
