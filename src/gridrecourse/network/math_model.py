"""The mathematical model of a feeder: per-unit arrays indexed by node (bus, phase).

A radial feeder has exactly one *branch-phase* feeding every non-root node, so branch-phase
quantities (flows ``P``, ``Q``, impedance rows) are indexed by their **child node**. This is
what makes every LinDist3Flow block a sparse matrix over nodes (METHODS §1.1).

Per-unit system
---------------
* Voltage base per node: the bus's line-to-neutral base (``Bus.kv_base_ln``).
* Power base per phase: ``s_base_kva`` (default 1000 kVA per phase), so ``p_pu = kW / 1000``.
* Impedance base per node: ``kV_LN² · 1000 / s_base_kva`` ohm.

Transformers (METHODS §1.2)
---------------------------
A two-winding transformer is an ideal per-phase ratio followed by its leakage impedance
(``%R1 + %R2 + j XHL`` on the winding kVA base, referred to the secondary) as a diagonal series
impedance. Conductor k of winding 1 feeds conductor k of winding 2. For ΔY and YΔ banks this is
the *phase-to-phase mapping with the 30° shift folded into the per-phase magnitude*: under
balanced primary voltages |V_LL|/√3 = |V_LN|, so magnitudes map through the turns ratio while
the constant shift leaves LinDist3Flow's relative phase angles (γ) unchanged. A single-phase
winding connected phase-to-phase (delta, two nodes) maps to its first node. Three-winding
split-phase service transformers must be folded first (:mod:`gridrecourse.network.reduce`).

Shunt elements
--------------
Each element's total complex power ``S`` is spread over nodes by its connection: wye over its
phases equally; a delta pair (x, y) gives node x the share ``V_x / (V_x − V_y)`` and node y the
share ``−V_y / (V_x − V_y)`` at nominal balanced phasors, i.e. ``S e^{∓j30°}/√3`` for the pair
ab (exact for balanced voltages); 3-phase delta is three such pairs with S/3 each. Loads are
constant power at nominal voltage in the linear model; capacitors are constant impedance
(injection ``b · v`` with v the squared voltage magnitude).

Regulators (METHODS §1.2)
-------------------------
Every regulator-controlled transformer is listed in :class:`RegulatorData`
(:attr:`MathFeeder.regulators`). The ratio of a controlled node is
``ratio = base_ratio · tap ** tap_exponent``: the ratio formula
``(kV2·tap2/base2) / (kV1·tap1/base1)`` is linear in a tap on winding 2 (exponent +1) and
inverse in a tap on winding 1 (exponent −1); a back-fed transformer flips the sign again.

Switches (METHODS §1.3)
-----------------------
By default open switches are dropped and closed ones are zero-impedance tree branches. With
``build_math_feeder(..., keep_switches=True)`` every switch is kept: the tree is a spanning tree
of the all-switches-closed graph that prefers non-switch branches, then normally-closed switches,
then normally-open ones (a minimum spanning forest with weights 0 / 1 / 2, so the normal
configuration is the tree whenever it is radial and feeds every bus). A switch in the tree is a
*switchable tree branch* (its child nodes); a switch closing a loop is a *tie* (an extra edge
between two existing nodes per phase). All tree switches are closed in the arrays of the
:class:`MathFeeder` itself; :class:`SwitchData` carries the switch states and the ties.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from gridrecourse.errors import FeederInputError
from gridrecourse.network.components import (
    PHASE_LETTERS,
    Connection,
    Feeder,
    Transformer,
    Winding,
)
from gridrecourse.network.topology import (
    BranchEdge,
    TreeOrder,
    _loop_error,
    accumulate_to_root,
    orient_radial,
)

DEFAULT_S_BASE_KVA = 1000.0
_NOMINAL_ANGLE = {1: 0.0, 2: -2 * np.pi / 3, 3: 2 * np.pi / 3}
ALPHA = np.exp(-2j * np.pi / 3)
#: γ of METHODS §1.1: gamma[φ-1, ψ-1] ≈ V_φ / V_ψ under balanced voltages.
GAMMA = np.array([[1, ALPHA**2, ALPHA], [ALPHA, 1, ALPHA**2], [ALPHA**2, ALPHA, 1]])


@dataclass(frozen=True, eq=False)
class RegulatorData:
    """Regulator-controlled transformers of a :class:`MathFeeder` (METHODS §1.2).

    One entry per controlled transformer (an OpenDSS RegControl): a ganged 3-phase regulator is
    one regulator with three nodes, each single-phase regulator of a bank is its own regulator.
    Arrays over *regulators* have length R; arrays over *regulator-phases* (the controlled
    branch-phases, indexed by their child node) have length E_R.

    Attributes
    ----------
    names : tuple of str, (R,)
        RegControl names.
    transformer_names : tuple of str, (R,)
        Controlled transformer (``Transformer.<name>`` is ``branch_names[branch_index]``).
    branch_index : ndarray of int, (R,)
        Index into :attr:`MathFeeder.branch_names`.
    winding : ndarray of int, (R,)
        Tapped winding (1 or 2).
    tap : ndarray, (R,)
        Tap in use in the model (p.u. of the winding kV).
    tap_min, tap_max : ndarray, (R,)
        Tap range (p.u.).
    n_steps : ndarray of int, (R,)
        Number of steps spanning ``[tap_min, tap_max]``: positions ``k = 0 … n_steps`` with
        ``tap_k = tap_min + k · tap_step``.
    base_ratio : ndarray, (R,)
        Node voltage ratio with the tapped winding at tap 1.0.
    tap_exponent : ndarray of int, (R,)
        +1 or −1: ``ratio = base_ratio · tap ** tap_exponent`` (−1 for a tap on winding 1 of a
        forward-fed transformer or on winding 2 of a back-fed one).
    enabled : ndarray of bool, (R,)
        Whether the RegControl is enabled in the source model.
    node : ndarray of int, (E_R,)
        Controlled child nodes (each is a non-root node fed by the regulator).
    regulator_of : ndarray of int, (E_R,)
        Regulator index of each controlled node.
    """

    names: tuple[str, ...]
    transformer_names: tuple[str, ...]
    branch_index: np.ndarray
    winding: np.ndarray
    tap: np.ndarray
    tap_min: np.ndarray
    tap_max: np.ndarray
    n_steps: np.ndarray
    base_ratio: np.ndarray
    tap_exponent: np.ndarray
    enabled: np.ndarray
    node: np.ndarray
    regulator_of: np.ndarray

    @classmethod
    def empty(cls) -> RegulatorData:
        """No regulators."""
        f, i = np.zeros(0), np.zeros(0, dtype=int)
        return cls((), (), i, i, f, f, f, i, f, i, np.zeros(0, dtype=bool), i, i)

    @property
    def n_regulators(self) -> int:
        """Number of regulators R."""
        return len(self.names)

    @property
    def tap_step(self) -> np.ndarray:
        """Per-unit tap change of one step, shape (R,)."""
        return (self.tap_max - self.tap_min) / np.maximum(self.n_steps, 1)

    @property
    def tap_position(self) -> np.ndarray:
        """Position ``k`` (0 … n_steps) of the tap in use, rounded to the nearest step."""
        return np.rint((self.tap - self.tap_min) / self.tap_step).astype(int)

    def tap_at(self, position: np.ndarray) -> np.ndarray:
        """Tap (p.u.) at integer positions ``k`` (shape (R,) or broadcastable, e.g. (R, K))."""
        step = self.tap_step.reshape((-1,) + (1,) * (np.ndim(position) - 1))
        low = self.tap_min.reshape(step.shape)
        return low + np.asarray(position) * step

    def ratio_at(self, tap: np.ndarray) -> np.ndarray:
        """Node ratio ``base_ratio · tap ** tap_exponent`` for taps per regulator (R, ...)."""
        tap = np.asarray(tap, dtype=float)
        shape = (-1,) + (1,) * (tap.ndim - 1)
        return self.base_ratio.reshape(shape) * tap ** self.tap_exponent.reshape(shape)

    def positions(self, i: int) -> np.ndarray:
        """All taps (p.u.) of regulator ``i``, positions 0 … n_steps."""
        return self.tap_min[i] + np.arange(self.n_steps[i] + 1) * self.tap_step[i]


@dataclass(frozen=True, eq=False)
class SwitchData:
    """Switches of a :class:`MathFeeder` built with ``keep_switches=True`` (METHODS §1.3).

    Arrays over *switches* have length S. Edge-phase arrays list one entry per switched
    conductor with the switch index in ``tree_switch`` / ``tie_switch``:

    * tree switches (``~is_tie``): the switch is the branch element feeding its child nodes
      ``tree_node`` (``parent[tree_node]`` is the other end; flows ``P``/``Q`` of those nodes
      are the switch flows and ``z_pu`` rows are zero);
    * ties (``is_tie``): an extra edge from node ``tie_from_node`` (bus1 side) to
      ``tie_to_node`` (bus2 side), with series impedance ``tie_z_pu`` coupling the edge-phases
      of the same tie (block-diagonal, p.u. on the bus2 base).

    Attributes
    ----------
    names : tuple of str, (S,)
    normal_closed : ndarray of bool, (S,)
        State in the source model (or as overridden by ``switch_states``).
    is_tie : ndarray of bool, (S,)
    bus_from, bus_to : ndarray of int, (S,)
        Bus indices: parent → child for tree switches, bus1 → bus2 for ties.
    branch_index : ndarray of int, (S,)
        Index into :attr:`MathFeeder.branch_names` (``Switch.<name>``).
    rating_pu : ndarray, (S,)
        Per-phase apparent-power rating, p.u. of the per-phase base (inf if unknown).
    tree_node, tree_switch : ndarray of int, (E_T,)
    tie_from_node, tie_to_node, tie_switch, tie_phase : ndarray of int, (E_L,)
        ``tie_phase`` is the phase (1, 2, 3) at the to-node (for γ).
    tie_z_pu : scipy.sparse.csr_matrix, complex, (E_L, E_L)
    normal_energized : ndarray of bool, (N,)
        Nodes energized in the normal state (no normally-open tree switch on their path to a
        root; the spanning tree is a minimax path tree, so this is exact when the normal state
        is radial).
    """

    names: tuple[str, ...]
    normal_closed: np.ndarray
    is_tie: np.ndarray
    bus_from: np.ndarray
    bus_to: np.ndarray
    branch_index: np.ndarray
    rating_pu: np.ndarray
    tree_node: np.ndarray
    tree_switch: np.ndarray
    tie_from_node: np.ndarray
    tie_to_node: np.ndarray
    tie_switch: np.ndarray
    tie_phase: np.ndarray
    tie_z_pu: sp.csr_matrix
    normal_energized: np.ndarray

    @property
    def n_switches(self) -> int:
        """Number of switches S."""
        return len(self.names)

    @property
    def tie_names(self) -> tuple[str, ...]:
        """Names of the ties."""
        return tuple(n for n, t in zip(self.names, self.is_tie, strict=True) if t)

    @property
    def tree_switch_names(self) -> tuple[str, ...]:
        """Names of the switchable tree branches."""
        return tuple(n for n, t in zip(self.names, self.is_tie, strict=True) if not t)

    def tie_drop_matrices(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """``M_P = 2 Re(γ ∘ conj Z)``, ``M_Q = −2 Im(γ ∘ conj Z)`` of the ties (METHODS §1.1).

        Returns
        -------
        m_p, m_q : scipy.sparse.csr_matrix, (E_L, E_L)
            The tie voltage drop is ``v_to − v_from + M_P P + M_Q Q`` (relaxed by big-M when
            the tie is open, METHODS §1.3) with P, Q the tie flows from → to.
        """
        z = self.tie_z_pu.tocoo()
        g = GAMMA[self.tie_phase[z.row] - 1, self.tie_phase[z.col] - 1]
        gz = g * np.conj(z.data)
        shape = self.tie_z_pu.shape
        return (
            sp.csr_matrix((2 * gz.real, (z.row, z.col)), shape=shape),
            sp.csr_matrix((-2 * gz.imag, (z.row, z.col)), shape=shape),
        )


class BranchKind:
    """Kinds of branch elements (string constants used in tables and plots)."""

    LINE = "line"
    SWITCH = "switch"
    TRANSFORMER = "transformer"


@dataclass(frozen=True)
class _Element:
    kind: str
    name: str
    bus1: int
    bus2: int
    phases1: tuple[int, ...]
    phases2: tuple[int, ...]
    z_ohm: np.ndarray  # referred to the bus2 side (ohm)
    z_ohm_reverse: np.ndarray  # referred to the bus1 side (ohm), for a back-fed element
    ratio: np.ndarray  # per conductor, v2 / v1 in per unit (magnitude)
    rating_kva_per_phase: float
    length_km: float
    delta_at: tuple[bool, bool] = (False, False)  # winding at bus1 / bus2 is delta
    # a single-phase winding between two phases (x, y) at bus1 / bus2 (None otherwise)
    line_to_line: tuple[tuple[int, int] | None, tuple[int, int] | None] = (None, None)


@dataclass(frozen=True, eq=False)
class MathFeeder:
    """Per-unit arrays of a radial feeder (see module docstring for conventions).

    Attributes
    ----------
    bus_names : tuple of str
    node_bus : ndarray of int, shape (N,)
        Bus index of each node.
    node_phase : ndarray of int, shape (N,)
        Phase (1, 2, 3) of each node.
    is_root : ndarray of bool, shape (N,)
    root_v_pu : ndarray, shape (N,)
        Fixed voltage magnitude (p.u.) at root nodes (NaN elsewhere).
    parent : ndarray of int, shape (N,)
        Parent node of each node (-1 at roots).
    ratio : ndarray, shape (N,)
        Voltage-magnitude ratio of the branch-phase feeding each node (1 for lines).
    z_pu : scipy.sparse.csr_matrix, complex, shape (N, N)
        Series impedance coupling between branch-phases of the same branch element, indexed by
        child node.
    rating_pu : ndarray, shape (N,)
        Apparent-power rating of the branch-phase feeding each node (p.u.; inf if unknown).
    branch_of_node : ndarray of int, shape (N,)
        Index into ``branch_names`` of the element feeding each node (-1 at roots).
    kv_base_ln : ndarray, shape (N,)
    distance_km : ndarray, shape (N,)
        Electrical path length from the root.
    load_map, pv_map, gen_map, storage_map : scipy.sparse.csr_matrix complex (N, n_elements)
        Spread of each element's total complex power onto nodes (column sums are 1).
    cap_b_pu : ndarray, shape (N,)
        Capacitor reactive injection per node at 1 p.u. voltage (p.u.); multiply by v.
    delta_fed : ndarray of bool, shape (N,)
        Nodes supplied through a delta (ungrounded) winding: only their line-to-line voltages
        are defined, so comparisons there use |V_LL|/√3.
    pair_fed : ndarray of bool, shape (N,) or None
        Delta-fed nodes behind a wye–delta winding (and the 3-wire network below it): node x
        stands for the pair ``(V_x − V_{x+1})/√3`` (a wye winding on phase x feeds the delta
        winding x–x+1); lines there use the pair-frame impedance ``A Z Aᵀ`` and phase-to-phase
        loads on (x, x+1) sit on node x. Other delta-fed nodes (delta–delta) keep the virtual
        wye phases of their primary. ``None`` for models built before this field existed.
    send_partner : ndarray of int, shape (N,) or None
        For a node fed through a winding between two phases x, y of a parent bus that is not
        pair-fed (a delta primary of a Δ–Y bank, a single-phase winding between two phases such
        as a line-to-line regulator): the node of phase y on the parent bus, whose node is x;
        the winding sees ``V_x − V_y``. −1 elsewhere. The linear model draws the node's power
        from x and y with the balanced-angle shares ``V_x/(V_x − V_y)``, ``−V_y/(V_x − V_y)``
        and takes its sending voltage from the pair (:mod:`gridrecourse.physics.lindistflow`);
        the second-order correction at the operating point uses the swept phasors
        (:class:`gridrecourse.physics.lindistflow.PhaseAngles`).
    regulators : RegulatorData
        Regulator-controlled transformers with their tap ranges (always filled).
    switches : SwitchData or None
        Switch states, switchable tree branches and ties; only with ``keep_switches=True``.
    """

    name: str
    s_base_kva: float
    bus_names: tuple[str, ...]
    node_bus: np.ndarray
    node_phase: np.ndarray
    is_root: np.ndarray
    root_v_pu: np.ndarray
    parent: np.ndarray
    ratio: np.ndarray
    z_pu: sp.csr_matrix
    rating_pu: np.ndarray
    branch_of_node: np.ndarray
    branch_names: tuple[str, ...]
    branch_kinds: tuple[str, ...]
    kv_base_ln: np.ndarray
    distance_km: np.ndarray
    load_names: tuple[str, ...]
    load_map: sp.csr_matrix
    load_kw: np.ndarray
    load_kvar: np.ndarray
    pv_names: tuple[str, ...]
    pv_map: sp.csr_matrix
    pv_kva: np.ndarray
    pv_p_kw: np.ndarray
    pv_q_kvar: np.ndarray
    gen_names: tuple[str, ...]
    gen_map: sp.csr_matrix
    gen_kw: np.ndarray
    gen_kvar: np.ndarray
    storage_names: tuple[str, ...]
    storage_map: sp.csr_matrix
    storage_kw: np.ndarray
    storage_kvar: np.ndarray
    cap_b_pu: np.ndarray
    delta_fed: np.ndarray
    deenergized_buses: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    regulators: RegulatorData = field(default_factory=RegulatorData.empty)
    switches: SwitchData | None = None
    pair_fed: np.ndarray | None = None
    send_partner: np.ndarray | None = None

    @property
    def n_nodes(self) -> int:
        """Number of energized (bus, phase) nodes."""
        return len(self.node_bus)

    @property
    def n_buses(self) -> int:
        """Number of energized buses."""
        return len(np.unique(self.node_bus))

    @property
    def n_branch_phases(self) -> int:
        """Number of branch-phases (= non-root nodes)."""
        return int((~self.is_root).sum())

    @property
    def node_names(self) -> list[str]:
        """``bus.phase`` names of the nodes (phase as 1, 2, 3, as in OpenDSS)."""
        return [
            f"{self.bus_names[b]}.{p}" for b, p in zip(self.node_bus, self.node_phase, strict=True)
        ]

    def node_index(self) -> dict[str, int]:
        """Map ``bus.phase`` (OpenDSS node name) to node index."""
        return {name: i for i, name in enumerate(self.node_names)}

    def phase_letter(self, node: int) -> str:
        """Phase letter (a, b, c) of a node."""
        return PHASE_LETTERS[int(self.node_phase[node])]


def _winding_base_kv(conn: Connection, n_phases: int, n_nodes: int, kv_ln: float) -> float:
    """Voltage base matching OpenDSS's rated winding kV (LL for multi-phase or delta)."""
    if n_phases > 1 or conn is Connection.DELTA or n_nodes > 1:
        return kv_ln * np.sqrt(3.0)
    return kv_ln


def _transformer_element(
    xf: Transformer, bus_index: dict[str, int], kv_ln: dict[str, float], taps: dict
) -> _Element:
    if xf.is_center_tapped:
        raise FeederInputError(
            f"transformer {xf.name!r} is a split-phase (center-tapped) service transformer; "
            "fold secondaries first with gridrecourse.network.reduce.fold_split_phase_secondaries"
        )
    if len(xf.windings) != 2:
        raise FeederInputError(
            f"transformer {xf.name!r} has {len(xf.windings)} windings; only two-winding "
            "transformers are modeled (three-winding split-phase ones are folded by reduction)"
        )
    w1, w2 = xf.windings
    tap1 = taps.get((xf.name, 1), w1.tap)
    tap2 = taps.get((xf.name, 2), w2.tap)
    b1 = _winding_base_kv(w1.connection, xf.n_phases, len(w1.phases), kv_ln[w1.bus])
    b2 = _winding_base_kv(w2.connection, xf.n_phases, len(w2.phases), kv_ln[w2.bus])
    ratio = (w2.kv * tap2 / b2) / (w1.kv * tap1 / b1)
    z_base = (w2.kv**2) * 1000.0 / w1.kva  # ohm, equivalent wye, referred to winding 2
    z_pct = complex(w1.r_pct + w2.r_pct, xf.x_pct[0])
    n = xf.n_phases
    p1 = w1.phases if len(w1.phases) == n else w1.phases[:n]
    p2 = w2.phases if len(w2.phases) == n else w2.phases[:n]
    return _Element(
        kind=BranchKind.TRANSFORMER,
        name=f"Transformer.{xf.name}",
        bus1=bus_index[w1.bus],
        bus2=bus_index[w2.bus],
        phases1=p1,
        phases2=p2,
        # a single-phase winding between two phases feeds a pair node (V_LL/√3, current
        # √3 I_w): its leakage seen by that node is a third of the winding's
        z_ohm=np.eye(len(p2)) * z_pct / 100.0 * z_base / _pair_factor(xf, w2),
        z_ohm_reverse=np.eye(len(p2))
        * z_pct
        / 100.0
        * z_base
        * (w1.kv / w2.kv) ** 2
        / _pair_factor(xf, w1),
        ratio=np.full(len(p2), ratio),
        rating_kva_per_phase=w1.kva / n,
        length_km=0.0,
        delta_at=(w1.connection is Connection.DELTA, w2.connection is Connection.DELTA),
        line_to_line=(_line_to_line(xf, w1), _line_to_line(xf, w2)),
    )


def _line_to_line(xf: Transformer, winding: Winding) -> tuple[int, int] | None:
    """Phases (x, y) of a single-phase winding connected between two phases, else ``None``."""
    if xf.n_phases == 1 and len(winding.phases) == 2 and winding.phases[0] != winding.phases[1]:
        return int(winding.phases[0]), int(winding.phases[1])
    return None


def _branch_elements(
    feeder: Feeder,
    bus_index: dict[str, int],
    switch_states: dict[str, bool],
    taps: dict,
    keep_switches: bool = False,
) -> list[_Element]:
    kv_ln = {b.name: b.kv_base_ln for b in feeder.buses}
    elements: list[_Element] = []
    for line in feeder.lines:
        rating = line.norm_amps * kv_ln[line.bus2] if np.isfinite(line.norm_amps) else np.inf
        elements.append(
            _Element(
                BranchKind.LINE,
                f"Line.{line.name}",
                bus_index[line.bus1],
                bus_index[line.bus2],
                line.phases1,
                line.phases2,
                line.z_ohm,
                line.z_ohm,
                np.ones(len(line.phases2)),
                rating,
                line.length_km,
            )
        )
    for sw in feeder.switches:
        if not keep_switches and not switch_states.get(sw.name, sw.closed):
            continue
        n = len(sw.phases2)
        rating = sw.norm_amps * kv_ln[sw.bus2] if np.isfinite(sw.norm_amps) else np.inf
        elements.append(
            _Element(
                BranchKind.SWITCH,
                f"Switch.{sw.name}",
                bus_index[sw.bus1],
                bus_index[sw.bus2],
                sw.phases1,
                sw.phases2,
                np.zeros((n, n), dtype=complex),
                np.zeros((n, n), dtype=complex),
                np.ones(n),
                rating,
                0.0,
            )
        )
    for xf in feeder.transformers:
        elements.append(_transformer_element(xf, bus_index, kv_ln, taps))
    return elements


def _delta_shares(px: int, py: int) -> tuple[complex, complex]:
    """Shares of a phase-to-phase element's power on its two nodes (balanced phasors)."""
    vx, vy = np.exp(1j * _NOMINAL_ANGLE[px]), np.exp(1j * _NOMINAL_ANGLE[py])
    return vx / (vx - vy), -vy / (vx - vy)


def _pair_frame_impedance(z: np.ndarray, phases: tuple[int, ...]) -> np.ndarray:
    """Series impedance seen by the pair voltages of a 3-wire (delta-fed) line.

    On a network fed through a wye–delta winding, node x of the model stands for the pair
    ``V'_x = (V_x − V_{x+1})/√3`` (its magnitude is ``|V_LL|/√3``). With ``V' = A V`` and the
    line currents ``I = Aᵀ I'`` (power is conserved: ``Vᵀ I* = V'ᵀ I'*``), the drop is
    ``V'_parent − V'_child = A Z Aᵀ I'``.
    """
    pos = {p: i for i, p in enumerate(phases)}
    a = np.zeros((len(phases), len(phases)))
    for i, p in enumerate(phases):
        a[i, pos[p]] += 1.0
        a[i, pos[p % 3 + 1]] -= 1.0
    a /= np.sqrt(3.0)
    return a @ z @ a.T


def _open_delta_impedance(z: np.ndarray, phases: tuple[int, ...], missing: int) -> np.ndarray:
    """Pair-frame impedance of a 3-wire line behind an open-delta bank (pair ``missing`` absent).

    The two present nodes a, b carry the bank's winding currents ``J_a = I'_a − I'_m``,
    ``J_b = I'_b − I'_m`` (the third pair's voltage is ``−(V'_a + V'_b)``); with the zero-sum
    ``I' = B J`` the drops of the present pairs are ``(A Z Aᵀ)[a, b] B J``. Row and column of the
    missing pair are zero.
    """
    zp = _pair_frame_impedance(z, phases)
    pos = {p: i for i, p in enumerate(phases)}
    a = missing % 3 + 1
    b = a % 3 + 1
    ia, ib, im = pos[a], pos[b], pos[missing]
    mb = np.zeros((3, 2))
    mb[ia] = [2.0 / 3.0, -1.0 / 3.0]
    mb[ib] = [-1.0 / 3.0, 2.0 / 3.0]
    mb[im] = [-1.0 / 3.0, -1.0 / 3.0]
    out = np.zeros_like(zp)
    block = zp[[ia, ib], :] @ mb
    out[np.ix_([ia, ib], [ia, ib])] = block
    return out


def _pair_factor(xf: Transformer, winding: Winding) -> float:
    """3 for a single-phase winding between two phases (delta, or wye on two nodes), else 1."""
    line_to_line = _line_to_line(xf, winding) is not None
    return (
        3.0
        if xf.n_phases == 1 and (winding.connection is Connection.DELTA or line_to_line)
        else 1.0
    )


def _winding_terminals(
    p_par: tuple[int, ...],
    p_chi: tuple[int, ...],
    ll_par: tuple[int, int] | None,
    ll_chi: tuple[int, int] | None,
    at_parent: bool,
    at_child: bool,
    par_bus: int,
    lookup: dict[tuple[int, int], int],
    node_pair: list[bool],
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Parent phases, child phases and parent partner phases (0: none) of a transformer.

    * A single-phase winding between phases (x, y) on the child side feeds the pair node of
      (x, y) (``x`` for ``(x, x+1)``, ``y`` for ``(x, x−1)``).
    * On the parent side it draws from node x with partner y (the winding sees ``V_x − V_y``),
      or from the pair node of (x, y) when the parent bus is itself pair-fed.
    * A 3-phase delta primary feeding a wye secondary: the winding feeding secondary phase k
      sees ``V_k − V_{k−1}`` of the winding's phases (OpenDSS's delta, secondary lagging 30°;
      the other orientation triples the error on 4Bus-DY-Bal), so its partner is phase k−1.
      A pair-fed parent bus gets no partner, and delta–delta banks keep their virtual wye
      phases (no partner).
    """
    partners = [0] * len(p_par)

    def pair_fed(phase: int) -> bool:
        node = lookup.get((par_bus, phase))
        return node is not None and node_pair[node]

    if ll_chi is not None:
        p_chi = (_pair_node(*ll_chi) or ll_chi[0],)
    if ll_par is not None:
        if pair_fed(ll_par[0]) or pair_fed(ll_par[1]):
            p_par = (_pair_node(*ll_par) or ll_par[0],)
            partners = [0]
        else:
            p_par = (ll_par[0],)
            partners = [ll_par[1]]
    elif at_parent and not at_child and len(p_par) == 3:
        if not any(pair_fed(p) for p in p_par):
            partners = [p_par[(c + 2) % 3] for c in range(3)]
    return tuple(p_par), tuple(p_chi), tuple(partners)


def _pair_node(px: int, py: int) -> int | None:
    """The node standing for pair (px, py) in pair semantics (``x`` for ``(x, x+1)``)."""
    if py == px % 3 + 1:
        return px
    if px == py % 3 + 1:
        return py
    return None


def _shunt_map(
    elements,
    node_lookup: dict[tuple[int, int], int],
    bus_index: dict[str, int],
    n_nodes: int,
    kind: str,
    dropped: list[str],
    delta_fed: np.ndarray | None = None,
) -> sp.csr_matrix:
    """Sparse (N, n_elements) matrix spreading each element's complex power onto nodes.

    On pair-fed nodes (behind a wye–delta winding, :func:`_pair_frame_impedance`) a
    phase-to-phase element on pair (x, x+1) puts its whole power on node x.
    """
    rows: list[int] = []
    cols: list[int] = []
    vals: list[complex] = []
    for j, el in enumerate(elements):
        b = bus_index.get(el.bus, -1)
        phases = el.phases
        entries: list[tuple[int, complex]] = []
        if el.connection is Connection.DELTA and len(phases) >= 2:
            pairs = [(phases[0], phases[1])] if len(phases) == 2 else [(1, 2), (2, 3), (3, 1)]
            for px, py in pairs:
                target = _pair_node(px, py)
                key = (b, target) if target is not None else None
                if delta_fed is not None and key in node_lookup and delta_fed[node_lookup[key]]:
                    entries.append((target, 1.0 / len(pairs)))
                    continue
                if delta_fed is not None and target is not None:
                    # open delta: pair `target` has no node; its power flows through both
                    # windings (node a gets −S V'_a/V'_m at balanced angles)
                    others = [target % 3 + 1, (target % 3 + 1) % 3 + 1]
                    keys = [(b, q) for q in others]
                    if all(k in node_lookup and delta_fed[node_lookup[k]] for k in keys):
                        for q in others:
                            rot = np.exp(1j * (_NOMINAL_ANGLE[q] - _NOMINAL_ANGLE[target]))
                            entries.append((q, -rot / len(pairs)))
                        continue
                sx, sy = _delta_shares(px, py)
                entries += [(px, sx / len(pairs)), (py, sy / len(pairs))]
        else:
            entries = [(p, 1.0 / len(phases)) for p in phases]
        missing = [p for p, _ in entries if (b, p) not in node_lookup]
        if missing:
            dropped.append(f"{kind}.{el.name} (bus {el.bus}, phases {missing} not energized)")
            continue
        for p, share in entries:
            rows.append(node_lookup[(b, p)])
            cols.append(j)
            vals.append(share)
    return sp.csr_matrix(
        (np.asarray(vals, dtype=complex), (rows, cols)), shape=(n_nodes, len(elements))
    )


def build_math_feeder(
    feeder: Feeder,
    *,
    switch_states: dict[str, bool] | None = None,
    taps: dict[tuple[str, int], float] | None = None,
    s_base_kva: float = DEFAULT_S_BASE_KVA,
    keep_switches: bool = False,
) -> MathFeeder:
    """Build the per-unit model of a radial feeder.

    Parameters
    ----------
    feeder : Feeder
        Engineering model (split-phase secondaries already folded, if any).
    switch_states : dict, optional
        ``{switch name: closed}`` overriding the normal states. With ``keep_switches`` they
        only set :attr:`SwitchData.normal_closed` (and so the preferred spanning tree).
    taps : dict, optional
        ``{(transformer name, winding): tap p.u.}`` overriding the feeder's taps.
    s_base_kva : float
        Power base per phase (kVA).
    keep_switches : bool
        Keep every switch (open ones too) as decision data in :attr:`MathFeeder.switches`: the
        tree is the preferred spanning tree of the all-switches-closed graph, switches closing
        loops become ties (see the module docstring). Nodes reachable only through a
        normally-open switch are in the model. Default ``False``: open switches are dropped.

    Raises
    ------
    MeshedNetworkError
        Closed branches form a loop (the message names the loop's branches); with
        ``keep_switches``, a loop made only of non-switch branches.
    IslandedBusError
        A bus carrying load or generation has no path to a root.
    FeederInputError
        Unsupported transformer windings, roots on unknown buses.
    """
    switch_states = switch_states or {}
    taps = taps or {}
    bus_names = [b.name for b in feeder.buses]
    bus_index = {n: i for i, n in enumerate(bus_names)}
    n_buses = len(bus_names)
    for r in feeder.roots:
        if r.bus not in bus_index:
            raise FeederInputError(f"feeder {feeder.name!r}: root bus {r.bus!r} does not exist")
    for el in (*feeder.lines, *feeder.switches):
        for bus in (el.bus1, el.bus2):
            if bus not in bus_index:
                raise FeederInputError(
                    f"feeder {feeder.name!r}: {type(el).__name__} {el.name!r} refers to "
                    f"unknown bus {bus!r}"
                )
    elements = _branch_elements(feeder, bus_index, switch_states, taps, keep_switches)

    # Group elements by bus pair: one topology edge per pair.
    groups: dict[tuple[int, int], list[int]] = {}
    for k, el in enumerate(elements):
        if el.bus1 == el.bus2:
            continue
        groups.setdefault((min(el.bus1, el.bus2), max(el.bus1, el.bus2)), []).append(k)
    roots = [bus_index[r.bus] for r in feeder.roots]
    tie_pairs: list[tuple[int, int]] = []
    if keep_switches:
        normal = {sw.name: bool(switch_states.get(sw.name, sw.closed)) for sw in feeder.switches}
        tie_pairs = _spanning_tree_ties(groups, elements, normal, roots, n_buses, bus_names)
        tie_set = set(tie_pairs)
        tree_groups = {pair: ks for pair, ks in groups.items() if pair not in tie_set}
    else:
        tree_groups = groups
    edges = [
        BranchEdge("+".join(elements[k].name for k in ks), a, b)
        for (a, b), ks in tree_groups.items()
    ]
    required = np.zeros(n_buses, dtype=bool)
    for el in (*feeder.loads, *feeder.pv_systems, *feeder.generators, *feeder.storage):
        if el.bus in bus_index:
            required[bus_index[el.bus]] = True
    tree: TreeOrder = orient_radial(n_buses, edges, roots, bus_names, required)

    # Nodes: roots first, then child conductors of each element in BFS order of child bus.
    node_bus: list[int] = []
    node_phase: list[int] = []
    node_parent: list[int] = []
    node_ratio: list[float] = []
    node_rating: list[float] = []
    node_branch: list[int] = []
    node_length: list[float] = []
    node_delta: list[bool] = []
    node_pair: list[bool] = []
    node_partner: list[int] = []
    root_v: list[float] = []
    lookup: dict[tuple[int, int], int] = {}
    for r in feeder.roots:
        b = bus_index[r.bus]
        bus_phases = feeder.buses[b].phases
        if len(r.v_pu) != len(bus_phases):
            raise FeederInputError(
                f"root {r.bus!r}: {len(r.v_pu)} voltages given for phases {bus_phases}"
            )
        for p, vpu in zip(bus_phases, r.v_pu, strict=True):
            lookup[(b, p)] = len(node_bus)
            node_bus.append(b)
            node_phase.append(p)
            node_parent.append(-1)
            node_ratio.append(1.0)
            node_rating.append(np.inf)
            node_branch.append(-1)
            node_length.append(0.0)
            node_delta.append(False)
            node_pair.append(False)
            node_partner.append(-1)
            root_v.append(vpu)

    coupling_rows: list[int] = []
    coupling_cols: list[int] = []
    coupling_vals: list[complex] = []
    kv_ln_bus = np.array([b.kv_base_ln for b in feeder.buses])
    orphan: list[str] = []
    position = np.empty(n_buses, dtype=int)
    position[tree.order] = np.arange(len(tree.order))
    group_child = {
        pair: (pair[1] if tree.parent[pair[1]] == pair[0] else pair[0])
        for pair in tree_groups
        if tree.energized[pair[0]]
    }
    ordered_groups = sorted(group_child.items(), key=lambda item: position[item[1]])
    for pair, child in ordered_groups:
        for k in tree_groups[pair]:
            el = elements[k]
            forward = el.bus2 == child
            p_par = el.phases1 if forward else el.phases2
            p_chi = el.phases2 if forward else el.phases1
            par_bus = el.bus1 if forward else el.bus2
            ratio = el.ratio if forward else 1.0 / el.ratio
            z_ohm = el.z_ohm if forward else el.z_ohm_reverse
            z_base = kv_ln_bus[child] ** 2 * 1000.0 / s_base_kva
            partners: tuple[int, ...] = (0,) * len(p_par)
            ll_chi = ll_par = None
            at_child = at_parent = False
            if el.kind == BranchKind.TRANSFORMER:
                at_child = el.delta_at[1] if forward else el.delta_at[0]
                at_parent = el.delta_at[0] if forward else el.delta_at[1]
                ll_par = el.line_to_line[0] if forward else el.line_to_line[1]
                ll_chi = el.line_to_line[1] if forward else el.line_to_line[0]
                p_par, p_chi, partners = _winding_terminals(
                    p_par, p_chi, ll_par, ll_chi, at_parent, at_child, par_bus, lookup, node_pair
                )
            new_nodes = []
            for c, (pp, pc) in enumerate(zip(p_par, p_chi, strict=False)):
                parent_node = lookup.get((par_bus, pp))
                if parent_node is None:
                    orphan.append(f"{el.name} phase {pc}")
                    new_nodes.append(-1)
                    continue
                if (child, pc) in lookup:
                    raise FeederInputError(
                        f"node {bus_names[child]}.{pc} is fed by two branch elements "
                        f"({el.name} and another): parallel elements on one phase are a loop"
                    )
                lookup[(child, pc)] = len(node_bus)
                new_nodes.append(len(node_bus))
                node_bus.append(child)
                node_phase.append(pc)
                node_parent.append(parent_node)
                node_ratio.append(float(ratio[c]))
                rating_kva = el.rating_kva_per_phase
                node_rating.append(rating_kva / s_base_kva)
                node_branch.append(k)
                node_length.append(el.length_km)
                if el.kind == BranchKind.TRANSFORMER:
                    node_delta.append(at_child or ll_chi is not None)
                    # wye → delta, or a single-phase winding between two phases: the child's
                    # node x is the pair (x, x+1)
                    node_pair.append((at_child and not at_parent) or ll_chi is not None)
                else:
                    node_delta.append(node_delta[parent_node])
                    node_pair.append(node_pair[parent_node])
                node_partner.append(lookup.get((par_bus, partners[c]), -1) if partners[c] else -1)
                root_v.append(np.nan)
            present = [n for n in new_nodes if n >= 0]
            if (
                el.kind != BranchKind.TRANSFORMER
                and sorted(p_chi) == [1, 2, 3]
                and len(present) >= 2
                and all(node_pair[n] for n in present)
            ):
                z_ohm = (
                    _pair_frame_impedance(z_ohm, tuple(p_chi))
                    if len(present) == 3
                    else _open_delta_impedance(z_ohm, tuple(p_chi), int(p_chi[new_nodes.index(-1)]))
                )
            for ci, ni in enumerate(new_nodes):
                for cj, nj in enumerate(new_nodes):
                    if ni >= 0 and nj >= 0 and z_ohm[ci, cj] != 0:
                        coupling_rows.append(ni)
                        coupling_cols.append(nj)
                        coupling_vals.append(z_ohm[ci, cj] / z_base)

    n_nodes = len(node_bus)
    notes: list[str] = []
    if orphan:
        notes.append(f"{len(orphan)} branch conductors with a de-energized parent phase skipped")
    dropped: list[str] = []
    fed = np.asarray(node_pair, dtype=bool)
    args = (lookup, bus_index, n_nodes)
    load_map = _shunt_map(feeder.loads, *args, "Load", dropped, fed)
    pv_map = _shunt_map(feeder.pv_systems, *args, "PVSystem", dropped, fed)
    gen_map = _shunt_map(feeder.generators, *args, "Generator", dropped, fed)
    st_map = _shunt_map(feeder.storage, *args, "Storage", dropped, fed)
    cap_map = _shunt_map(feeder.capacitors, *args, "Capacitor", dropped, fed)
    if dropped:
        warnings.warn(
            f"feeder {feeder.name!r}: {len(dropped)} shunt elements sit on phases with no "
            f"supply and are left out: {dropped[:10]}",
            UserWarning,
            stacklevel=2,
        )
        notes.append(f"shunt elements on non-energized phases left out: {dropped}")
    cap_kvar = np.array([c.kvar * c.steps_closed for c in feeder.capacitors])
    # Rated kvar at rated kV; at the bus base, b = Q_rated * (V_base / V_rated)^2 per unit.
    cap_scale = np.array(
        [
            (
                kv_ln_bus[bus_index[c.bus]]
                * (np.sqrt(3) if (len(c.phases) > 1 or c.connection is Connection.DELTA) else 1.0)
                / c.kv
            )
            ** 2
            if c.bus in bus_index and c.kv > 0
            else 1.0
            for c in feeder.capacitors
        ]
    )
    cap_b = cap_map @ (cap_kvar * cap_scale / s_base_kva) if len(cap_kvar) else np.zeros(n_nodes)

    parent = np.asarray(node_parent, dtype=int)
    lengths = np.asarray(node_length)
    distance = accumulate_to_root(parent, lengths)
    kinds = tuple(el.kind for el in elements)
    branch_of_node = np.asarray(node_branch, dtype=int)
    node_bus_arr = np.asarray(node_bus, dtype=int)
    node_ratio_arr = np.asarray(node_ratio)
    regulators = _regulator_data(
        feeder, elements, branch_of_node, node_bus_arr, node_ratio_arr, bus_index, taps, notes
    )
    switch_data = None
    if keep_switches:
        switch_data = _switch_data(
            feeder,
            elements,
            groups,
            tie_pairs,
            switch_states,
            lookup,
            parent,
            branch_of_node,
            node_bus_arr,
            kv_ln_bus,
            s_base_kva,
            notes,
        )
    return MathFeeder(
        name=feeder.name,
        s_base_kva=s_base_kva,
        bus_names=tuple(bus_names),
        node_bus=np.asarray(node_bus, dtype=int),
        node_phase=np.asarray(node_phase, dtype=int),
        is_root=parent < 0,
        root_v_pu=np.asarray(root_v, dtype=float),
        parent=parent,
        ratio=np.asarray(node_ratio),
        z_pu=sp.csr_matrix(
            (np.asarray(coupling_vals, dtype=complex), (coupling_rows, coupling_cols)),
            shape=(n_nodes, n_nodes),
        ),
        rating_pu=np.asarray(node_rating),
        branch_of_node=branch_of_node,
        branch_names=tuple(el.name for el in elements),
        branch_kinds=kinds,
        kv_base_ln=kv_ln_bus[np.asarray(node_bus, dtype=int)],
        distance_km=distance,
        load_names=tuple(x.name for x in feeder.loads),
        load_map=load_map,
        load_kw=np.array([x.kw for x in feeder.loads]),
        load_kvar=np.array([x.kvar for x in feeder.loads]),
        pv_names=tuple(x.name for x in feeder.pv_systems),
        pv_map=pv_map,
        pv_kva=np.array([x.kva for x in feeder.pv_systems]),
        pv_p_kw=np.array([x.p_kw for x in feeder.pv_systems]),
        pv_q_kvar=np.array([x.q_kvar for x in feeder.pv_systems]),
        gen_names=tuple(x.name for x in feeder.generators),
        gen_map=gen_map,
        gen_kw=np.array([x.kw for x in feeder.generators]),
        gen_kvar=np.array([x.kvar for x in feeder.generators]),
        storage_names=tuple(x.name for x in feeder.storage),
        storage_map=st_map,
        storage_kw=np.array([x.kw for x in feeder.storage]),
        storage_kvar=np.array([x.kvar for x in feeder.storage]),
        cap_b_pu=np.real(cap_b) if np.ndim(cap_b) else np.zeros(n_nodes),
        delta_fed=np.asarray(node_delta, dtype=bool),
        pair_fed=np.asarray(node_pair, dtype=bool),
        send_partner=np.asarray(node_partner, dtype=int),
        deenergized_buses=tuple(bus_names[i] for i in np.flatnonzero(~tree.energized)),
        notes=tuple(notes),
        regulators=regulators,
        switches=switch_data,
    )


def _find(parent: list[int], x: int) -> int:
    """Union-find root with path halving."""
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def _spanning_tree_ties(
    groups: dict[tuple[int, int], list[int]],
    elements: list[_Element],
    normal_closed: dict[str, bool],
    roots: list[int],
    n_buses: int,
    bus_names: list[str],
) -> list[tuple[int, int]]:
    """Bus pairs left out of the preferred spanning forest (the ties), Kruskal's algorithm.

    Group weights: 0 if the group holds a non-switch element, 1 if it holds a normally-closed
    switch, else 2; every root hangs off a super-root with weight −1. A weight-0 group that
    closes a loop means a loop of non-switch branches (or two roots joined by them).

    Raises
    ------
    MeshedNetworkError
        A loop (or a root-to-root path) made only of non-switch branches; names its branches.
    """
    weight: dict[tuple[int, int], int] = {}
    for pair, ks in groups.items():
        w = 2
        for k in ks:
            el = elements[k]
            if el.kind != BranchKind.SWITCH:
                w = 0
            elif normal_closed[el.name.split(".", 1)[1]]:
                w = min(w, 1)
        weight[pair] = w
    super_root = n_buses
    uf = list(range(n_buses + 1))
    for r in roots:
        uf[_find(uf, r)] = _find(uf, super_root)
    ties: list[tuple[int, int]] = []
    for pair in sorted(groups, key=lambda q: weight[q]):  # stable: source order within a weight
        a, b = _find(uf, pair[0]), _find(uf, pair[1])
        if a != b:
            uf[a] = b
            continue
        if weight[pair] == 0:
            fixed = [
                BranchEdge("+".join(elements[k].name for k in ks), u, v)
                for (u, v), ks in groups.items()
                if weight[(u, v)] == 0
            ]
            sources = [BranchEdge(f"<source {bus_names[r]}>", super_root, r) for r in roots]
            raise _loop_error(
                n_buses + 1,
                [*fixed, *sources],
                [*bus_names, "<sources>"],
                np.arange(n_buses + 1),
            )
        ties.append(pair)
    return ties


def _regulator_data(
    feeder: Feeder,
    elements: list[_Element],
    branch_of_node: np.ndarray,
    node_bus: np.ndarray,
    node_ratio: np.ndarray,
    bus_index: dict[str, int],
    taps: dict,
    notes: list[str],
) -> RegulatorData:
    """One :class:`RegulatorData` entry per regulator-controlled transformer in the model."""
    element_index = {el.name: k for k, el in enumerate(elements)}
    transformers = {xf.name: xf for xf in feeder.transformers}
    rows: list[tuple] = []
    nodes: list[np.ndarray] = []
    seen: set[str] = set()
    for reg in feeder.regulators:
        xf = transformers.get(reg.transformer)
        k = element_index.get(f"Transformer.{reg.transformer}", -1)
        controlled = np.flatnonzero(branch_of_node == k) if k >= 0 else np.zeros(0, dtype=int)
        if xf is None or len(controlled) == 0:
            notes.append(f"regulator {reg.name!r}: transformer {reg.transformer!r} not in model")
            continue
        if reg.transformer in seen:
            notes.append(
                f"regulator {reg.name!r}: transformer {reg.transformer!r} already controlled "
                "by another regulator; left out"
            )
            continue
        if reg.winding not in (1, 2):
            raise FeederInputError(
                f"regulator {reg.name!r} taps winding {reg.winding} of transformer "
                f"{reg.transformer!r}; only two-winding transformers are modeled"
            )
        seen.add(reg.transformer)
        forward = bool(node_bus[controlled[0]] == bus_index[xf.windings[1].bus])
        exponent = (1 if reg.winding == 2 else -1) * (1 if forward else -1)
        tap = float(taps.get((reg.transformer, reg.winding), xf.windings[reg.winding - 1].tap))
        base = float(node_ratio[controlled[0]]) / tap**exponent
        rows.append(
            (
                reg.name,
                reg.transformer,
                k,
                reg.winding,
                tap,
                reg.tap_min,
                reg.tap_max,
                reg.n_steps,
                base,
                exponent,
                reg.enabled,
            )
        )
        nodes.append(controlled)
    if not rows:
        return RegulatorData.empty()
    cols = list(zip(*rows, strict=True))
    return RegulatorData(
        names=tuple(cols[0]),
        transformer_names=tuple(cols[1]),
        branch_index=np.asarray(cols[2], dtype=int),
        winding=np.asarray(cols[3], dtype=int),
        tap=np.asarray(cols[4], dtype=float),
        tap_min=np.asarray(cols[5], dtype=float),
        tap_max=np.asarray(cols[6], dtype=float),
        n_steps=np.asarray(cols[7], dtype=int),
        base_ratio=np.asarray(cols[8], dtype=float),
        tap_exponent=np.asarray(cols[9], dtype=int),
        enabled=np.asarray(cols[10], dtype=bool),
        node=np.concatenate(nodes),
        regulator_of=np.repeat(np.arange(len(nodes)), [len(n) for n in nodes]),
    )


def _switch_data(
    feeder: Feeder,
    elements: list[_Element],
    groups: dict[tuple[int, int], list[int]],
    tie_pairs: list[tuple[int, int]],
    switch_states: dict[str, bool],
    lookup: dict[tuple[int, int], int],
    parent: np.ndarray,
    branch_of_node: np.ndarray,
    node_bus: np.ndarray,
    kv_ln_bus: np.ndarray,
    s_base_kva: float,
    notes: list[str],
) -> SwitchData:
    """Assemble :class:`SwitchData` (keep-switches mode)."""
    element_index = {el.name: k for k, el in enumerate(elements)}
    tie_elements = {k for pair in tie_pairs for k in groups[pair]}
    n_nodes = len(parent)
    names, closed, is_tie, bus_from, bus_to, branch_index, rating = [], [], [], [], [], [], []
    tree_node, tree_switch = [], []
    tie_from, tie_to, tie_sw, tie_ph = [], [], [], []
    z_rows, z_cols, z_vals = [], [], []
    for s_idx, sw in enumerate(feeder.switches):
        k = element_index[f"Switch.{sw.name}"]
        el = elements[k]
        names.append(sw.name)
        closed.append(bool(switch_states.get(sw.name, sw.closed)))
        branch_index.append(k)
        rating.append(el.rating_kva_per_phase / s_base_kva)
        if k in tie_elements or el.bus1 == el.bus2:
            is_tie.append(True)
            bus_from.append(el.bus1)
            bus_to.append(el.bus2)
            first = len(tie_from)
            z_base = kv_ln_bus[el.bus2] ** 2 * 1000.0 / s_base_kva
            kept = []
            for c, (p1, p2) in enumerate(zip(el.phases1, el.phases2, strict=False)):
                a, b = lookup.get((el.bus1, p1)), lookup.get((el.bus2, p2))
                if a is None or b is None:
                    notes.append(f"tie {el.name} phase {p2}: an end is not energized; skipped")
                    continue
                tie_from.append(a)
                tie_to.append(b)
                tie_sw.append(s_idx)
                tie_ph.append(p2)
                kept.append(c)
            for i, ci in enumerate(kept):
                for j, cj in enumerate(kept):
                    if el.z_ohm[ci, cj] != 0:
                        z_rows.append(first + i)
                        z_cols.append(first + j)
                        z_vals.append(el.z_ohm[ci, cj] / z_base)
        else:
            is_tie.append(False)
            fed = np.flatnonzero(branch_of_node == k)
            if len(fed):
                bus_from.append(int(node_bus[parent[fed[0]]]))
                bus_to.append(int(node_bus[fed[0]]))
            else:
                notes.append(f"switch {el.name}: not energized in the all-closed network")
                bus_from.append(el.bus1)
                bus_to.append(el.bus2)
            tree_node.extend(fed.tolist())
            tree_switch.extend([s_idx] * len(fed))
    tree_node_arr = np.asarray(tree_node, dtype=int)
    tree_switch_arr = np.asarray(tree_switch, dtype=int)
    closed_arr = np.asarray(closed, dtype=bool)
    cut = np.zeros(n_nodes, dtype=int)
    cut[tree_node_arr] = ~closed_arr[tree_switch_arr]
    n_tie = len(tie_from)
    return SwitchData(
        names=tuple(names),
        normal_closed=closed_arr,
        is_tie=np.asarray(is_tie, dtype=bool),
        bus_from=np.asarray(bus_from, dtype=int),
        bus_to=np.asarray(bus_to, dtype=int),
        branch_index=np.asarray(branch_index, dtype=int),
        rating_pu=np.asarray(rating, dtype=float),
        tree_node=tree_node_arr,
        tree_switch=tree_switch_arr,
        tie_from_node=np.asarray(tie_from, dtype=int),
        tie_to_node=np.asarray(tie_to, dtype=int),
        tie_switch=np.asarray(tie_sw, dtype=int),
        tie_phase=np.asarray(tie_ph, dtype=int),
        tie_z_pu=sp.csr_matrix(
            (np.asarray(z_vals, dtype=complex), (z_rows, z_cols)), shape=(n_tie, n_tie)
        ),
        normal_energized=accumulate_to_root(parent, cut) == 0,
    )
