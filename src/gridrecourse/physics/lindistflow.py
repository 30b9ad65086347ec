"""LinDist3Flow: the phase-coupled linearized branch-flow model (METHODS §1.1).

For every non-root node n (bus j, phase φ) fed by branch-phase (i→j, φ)::

    P_n − Σ_{m child of n} P_m             = p_n                       (real flow balance)
    Q_n − Σ_{m child of n} Q_m + b_n v_n   = q_n                       (capacitor b·v)
    v_n − ρ_n² v_parent(n) + Σ_m (M_P[n,m] P_m + M_Q[n,m] Q_m) = 0     (voltage drop)

with ``M_P = 2 Re(γ ∘ conj(Z))``, ``M_Q = −2 Im(γ ∘ conj(Z))`` over the phases of each branch
element, ρ the per-unit turns ratio of a transformer/regulator branch (1 for lines), p, q the
net load (load − generation) in p.u. and v the squared voltage magnitude. Root voltages are
fixed. The three blocks form one sparse square system ``A x = b(p, q, v_root)`` that is
factorized once and re-solved for any number of injection columns (times × scenarios); the same
``A`` is the equality block of every optimization model built on it.

Second-order correction (fixed-point passes, :meth:`LinDist3Flow.loss_terms`): the flows get
the series losses ``(Z I) I*`` and the drop rows a term ``Δv`` on their right-hand side, from
the currents of the previous pass. Two ways to get those currents (:class:`PhaseAngles`):

* ``NOMINAL`` (the optimization models' loss correction): ``I = conj(S / V)`` with ``V`` at the
  pass's magnitude and the balanced angles 0, ∓120° that γ assumes; ``Δv = |Z I|²``.
* ``OPERATING_POINT`` (validation): the node phasors are swept down the tree from the roots,
  ``V_n = ρ_n V_parent(n) − (Z I)_n``, so their angles are those of the operating point (an
  unbalanced open-delta secondary sits 8–11° off the balanced angles). ``Δv`` then also carries
  the difference between the linear drop ``(M_P P + M_Q Q)_n`` (balanced γ) and the drop at the
  swept phasors, ``2 Re(ρ_n V_parent(n) conj((Z I)_n)) − |Z I|²``: the rows and ``A`` are
  unchanged, and at the fixed point the solution satisfies the branch equations exactly at the
  given injections. Windings between two parent phases use ``V_x − V_y``
  (``MathFeeder.send_partner``) and split their power between x and y; around a closed delta
  (three transformer-fed pair nodes of one bus) a circulating current closes KVL. The terms
  are evaluated at one operating point, so they are only valid near it: this is the
  validation's behaviour (``gridrecourse validate``), not the optimization models' default;
  the AC certificate of a decision reports the optimization model's own error.

References
----------
L. Gan and S. H. Low, "Convex relaxations and linear approximation for optimal power flow in
multiphase radial networks," PSCC 2014. D. B. Arnold et al., "Optimal dispatch of reactive power
for voltage regulation and balancing in unbalanced distribution systems," IEEE PES GM 2016.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from gridrecourse.errors import InvalidSeriesError
from gridrecourse.network.math_model import _NOMINAL_ANGLE, GAMMA, MathFeeder

#: Inner sweeps (currents ↔ phasors at fixed flows) per pass of the operating-point correction.
_SWEEPS_PER_PASS = 3


class PhaseAngles(str, Enum):
    """Phase angles behind the second-order correction (module docstring)."""

    #: balanced angles 0, −120°, +120° (the γ of METHODS §1.1); the optimization models' default
    NOMINAL = "nominal"
    #: angles of the operating point, swept from the roots through the series drops
    OPERATING_POINT = "operating_point"


@dataclass(frozen=True, eq=False)
class LossTerms:
    """Second-order terms of LinDist3Flow at an operating point (the loss correction).

    Attributes
    ----------
    flow : ndarray of complex, shape (E, K)
        Series losses ``(Z I) I*`` of each branch-phase, added to its sending-end flow (p.u.).
    drop : ndarray, shape (E, K)
        Added to the right-hand side of the voltage-drop row of each branch-phase (p.u.²):
        ``|Z I|²`` with nominal angles; with the operating point's angles also the linear drop
        minus the drop at the swept phasors (:class:`PhaseAngles`).
    v_angle_rad : ndarray, shape (N, K), optional
        Phase angle (rad) of every node's voltage in the model's frame at the operating point
        (transformer phase shifts are folded into the model, so only angles within a bus are
        comparable with OpenDSS's); ``None`` for nominal angles.
    """

    flow: np.ndarray
    drop: np.ndarray
    v_angle_rad: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class PowerFlowSolution:
    """A LinDist3Flow solution; the last axis of every array is the column (time/scenario).

    Attributes
    ----------
    v_pu : ndarray, shape (N, K)
        Voltage magnitude (p.u.) at every node, roots included.
    p_flow_pu, q_flow_pu : ndarray, shape (N, K)
        Sending-end flow of the branch-phase feeding each node (0 at roots).
    substation_p_pu, substation_q_pu : ndarray, shape (K,)
        Total power entering the feeder at the roots (p.u. of the per-phase base).
    losses_p_pu : ndarray, shape (K,)
        Series losses included in the flows (0 for the lossless model).
    v_angle_rad : ndarray, shape (N, K), optional
        Phase angle (rad) of every node in the model's frame: the balanced angles for
        :attr:`PhaseAngles.NOMINAL`, the swept operating point's for
        :attr:`PhaseAngles.OPERATING_POINT`.
    """

    v_pu: np.ndarray
    p_flow_pu: np.ndarray
    q_flow_pu: np.ndarray
    substation_p_pu: np.ndarray
    substation_q_pu: np.ndarray
    losses_p_pu: np.ndarray
    v_angle_rad: np.ndarray | None = None


class LinDist3Flow:
    """LinDist3Flow built once for a :class:`MathFeeder`.

    Parameters
    ----------
    math : MathFeeder
        Per-unit radial feeder.

    Attributes
    ----------
    nonroot, root : ndarray of int
        Node indices of non-root and root nodes; variables are ordered ``[P, Q, v]`` over
        ``nonroot``.
    system : scipy.sparse.csc_matrix, shape (3E, 3E)
        The equality block over ``[P, Q, v]``.
    """

    def __init__(self, math: MathFeeder):
        self.math = math
        n = math.n_nodes
        self.nonroot = np.flatnonzero(~math.is_root)
        self.root = np.flatnonzero(math.is_root)
        e = len(self.nonroot)
        self.n_branch_phases = e
        pos = np.full(n, -1)
        pos[self.nonroot] = np.arange(e)
        rpos = np.full(n, -1)
        rpos[self.root] = np.arange(len(self.root))
        par = math.parent[self.nonroot]
        par_nonroot = pos[par] >= 0
        child_idx = np.arange(e)
        # children-sum: (C)[pos(parent m), m] = 1
        c = sp.csr_matrix(
            (np.ones(par_nonroot.sum()), (pos[par[par_nonroot]], child_idx[par_nonroot])),
            shape=(e, e),
        )
        eye = sp.identity(e, format="csr")
        self.flow = (eye - c).tocsr()
        #: (n_root, E): sums the flows of branch-phases leaving each root node.
        self.root_outflow = sp.csr_matrix(
            (np.ones((~par_nonroot).sum()), (rpos[par[~par_nonroot]], child_idx[~par_nonroot])),
            shape=(len(self.root), e),
        )
        rho2 = math.ratio[self.nonroot] ** 2
        self.voltage_parent = sp.csr_matrix(
            (rho2[par_nonroot], (child_idx[par_nonroot], pos[par[par_nonroot]])), shape=(e, e)
        )
        #: (E, n_root): ρ² for branch-phases whose parent is a root node.
        self.voltage_root = sp.csr_matrix(
            (rho2[~par_nonroot], (child_idx[~par_nonroot], rpos[par[~par_nonroot]])),
            shape=(e, len(self.root)),
        )
        z = math.z_pu[self.nonroot][:, self.nonroot].tocoo()
        self.z = sp.csr_matrix((z.data, (z.row, z.col)), shape=(e, e))
        phase = math.node_phase[self.nonroot]
        g = GAMMA[phase[z.row] - 1, phase[z.col] - 1]
        gz = g * np.conj(z.data)
        self.m_p = sp.csr_matrix((2 * gz.real, (z.row, z.col)), shape=(e, e))
        self.m_q = sp.csr_matrix((-2 * gz.imag, (z.row, z.col)), shape=(e, e))
        self.cap_b = math.cap_b_pu[self.nonroot]
        zero = sp.csr_matrix((e, e))
        self.system = sp.bmat(
            [
                [self.flow, zero, zero],
                [zero, self.flow, sp.diags(self.cap_b)],
                [self.m_p, self.m_q, eye - self.voltage_parent],
            ],
            format="csc",
        )
        self._lu = None
        self._sweep_lu = None
        self._nominal_angle = np.array([_NOMINAL_ANGLE[int(p)] for p in math.node_phase])
        self._phase_angle = self._nominal_angle[self.nonroot]
        self._rho = math.ratio[self.nonroot]
        self._parent = math.parent[self.nonroot]
        # The phasor sweep ``V_n − s_n = −(Z I)_n`` over non-root nodes with the sending phasor
        # s_n = ρ_n V_parent(n), or ρ_n c_n (V_x − V_y) for a winding between two parent phases
        # x, y (MathFeeder.send_partner; c_n makes it V_x's angle at balanced voltages).
        partner = getattr(math, "send_partner", None)
        partner = np.full(n, -1) if partner is None else np.asarray(partner, dtype=int)
        self._pos = pos
        self._pair_rows = np.flatnonzero(partner[self.nonroot] >= 0)
        self._pair_partner = partner[self.nonroot][self._pair_rows]
        theta = self._nominal_angle
        self._pair_c = np.exp(1j * theta[self.nonroot][self._pair_rows]) / (
            np.exp(1j * theta[par[self._pair_rows]]) - np.exp(1j * theta[self._pair_partner])
        )
        gain = self._rho.astype(complex)
        gain[self._pair_rows] *= self._pair_c
        rows = np.concatenate([child_idx, self._pair_rows])
        cols = np.concatenate([par, self._pair_partner])
        vals = np.concatenate([gain, -gain[self._pair_rows]])
        #: (E, N) complex: the sending phasors s = send_map @ V (all nodes, roots included).
        self._send_map = sp.csr_matrix((vals, (rows, cols)), shape=(e, n))
        self._sweep = (
            sp.identity(e, dtype=complex, format="csc") - self._send_map[:, self.nonroot]
        ).tocsc()
        self._sweep_root = self._send_map[:, self.root].tocsr()
        self._init_delta_banks()

    def _init_delta_banks(self) -> None:
        """Closed delta windings: buses whose three pair nodes are fed by transformers.

        Around a closed delta the winding voltages sum to zero, ``Σ_k (s_k − z_k J_k) = 0``:
        unequal taps (or a zero-sequence primary voltage) drive a current ``c`` around it,
        ``J_k = I'_k + c`` (the operating-point correction carries it).
        """
        math = self.math
        pair = getattr(math, "pair_fed", None)
        branch = math.branch_of_node[self.nonroot]
        kinds = np.asarray([*math.branch_kinds, ""], dtype=object)
        cand = np.zeros(len(branch), dtype=bool)
        if pair is not None:
            cand = np.asarray(pair, dtype=bool)[self.nonroot] & (kinds[branch] == "transformer")
        z_diag = self.z.diagonal()
        _, inverse, counts = np.unique(
            math.node_bus[self.nonroot][cand], return_inverse=True, return_counts=True
        )
        rows = np.flatnonzero(cand)
        bank = counts[inverse] == 3
        rows, bank_of = rows[bank], inverse[bank]
        _, bank_of = np.unique(bank_of, return_inverse=True)
        n_banks = int(bank_of.max()) + 1 if len(bank_of) else 0
        group = sp.csr_matrix(
            (np.ones(len(rows)), (bank_of, np.arange(len(rows)))), shape=(n_banks, len(rows))
        )
        z_sum = group @ z_diag[rows]
        keep = np.abs(z_sum) > 0
        take = keep[bank_of] if n_banks else np.zeros(0, dtype=bool)
        rows, bank_of = rows[take], bank_of[take]
        _, bank_of = np.unique(bank_of, return_inverse=True)
        n_banks = int(bank_of.max()) + 1 if len(bank_of) else 0
        self._bank_rows, self._bank_of = rows, bank_of
        self._bank_sum = sp.csr_matrix(
            (np.ones(len(rows)), (bank_of, np.arange(len(rows)))), shape=(n_banks, len(rows))
        )
        self._bank_z = z_diag[rows]
        self._bank_z_sum = self._bank_sum @ self._bank_z

    @property
    def lu(self):
        """Sparse LU factorization of :attr:`system` (computed once, on first use)."""
        if self._lu is None:
            self._lu = splu(self.system)
        return self._lu

    @property
    def sweep_lu(self):
        """Sparse LU of the phasor sweep ``V_n − s_n`` (computed on first use)."""
        if self._sweep_lu is None:
            self._sweep_lu = splu(self._sweep)
        return self._sweep_lu

    def rhs(
        self,
        p_pu: np.ndarray,
        q_pu: np.ndarray,
        v_root_sq: np.ndarray,
        dv: np.ndarray | None = None,
    ) -> np.ndarray:
        """Right-hand side ``b`` for net loads on non-root nodes (E, K) and root v² (R, K)."""
        volt = self.voltage_root @ v_root_sq
        if dv is not None:
            volt = volt + dv
        return np.concatenate([p_pu, q_pu, volt], axis=0)

    def solve(
        self,
        p_pu: np.ndarray,
        q_pu: np.ndarray,
        v_root_pu: np.ndarray | None = None,
        *,
        second_order_iterations: int = 0,
        angles: PhaseAngles = PhaseAngles.NOMINAL,
    ) -> PowerFlowSolution:
        """Solve LinDist3Flow for given net loads.

        Parameters
        ----------
        p_pu, q_pu : ndarray, shape (N,) or (N, K)
            Net load (load − generation) per node in p.u. of the per-phase base.
        v_root_pu : ndarray, shape (n_root,) or (n_root, K), optional
            Root voltage magnitudes (default: the feeder's roots).
        second_order_iterations : int
            Fixed-point passes of the second-order correction (:meth:`loss_terms`), from the
            previous pass's currents (0 gives plain lossless LinDist3Flow).
        angles : PhaseAngles
            Phase angles of the correction's currents (module docstring); only used with
            ``second_order_iterations > 0``.

        Returns
        -------
        PowerFlowSolution
        """
        p = np.asarray(p_pu, dtype=float)
        q = np.asarray(q_pu, dtype=float)
        for label, arr in (("p", p), ("q", q)):
            bad = ~np.isfinite(arr)
            if bad.any():
                node = int(np.flatnonzero(bad.reshape(len(arr), -1).any(axis=1))[0])
                raise InvalidSeriesError(
                    f"net load {label} at node {self.math.node_names[node]} is "
                    f"{arr.reshape(len(arr), -1)[node][0]}; expected finite values"
                )
        squeeze = p.ndim == 1
        if squeeze:
            p, q = p[:, None], q[:, None]
        k = p.shape[1]
        v_root = self._root_voltages(v_root_pu, k)
        v_root_sq = v_root**2
        e = self.n_branch_phases
        p_nr, q_nr = p[self.nonroot], q[self.nonroot]
        loss = np.zeros((e, k), dtype=complex)
        dv = np.zeros((e, k))
        angle = np.repeat(self._nominal_angle[:, None], k, axis=1)
        if second_order_iterations > 0:
            terms = self.loss_terms(p, q, v_root, iterations=second_order_iterations, angles=angles)
            loss, dv = terms.flow, terms.drop
            if terms.v_angle_rad is not None:
                angle = terms.v_angle_rad
        x = self.lu.solve(self.rhs(p_nr + loss.real, q_nr + loss.imag, v_root_sq, dv))
        pf, qf, vsq = x[:e], x[e : 2 * e], x[2 * e :]
        n = self.math.n_nodes
        v = np.empty((n, k))
        v[self.root] = np.sqrt(v_root_sq)
        v[self.nonroot] = np.sqrt(np.maximum(vsq, 0.0))
        p_flow = np.zeros((n, k))
        q_flow = np.zeros((n, k))
        p_flow[self.nonroot], q_flow[self.nonroot] = pf, qf
        cap_root = self.math.cap_b_pu[self.root][:, None] * v_root_sq
        sub_p = (self.root_outflow @ pf + p[self.root]).sum(axis=0)
        sub_q = (self.root_outflow @ qf + q[self.root] - cap_root).sum(axis=0)
        sol = PowerFlowSolution(
            v_pu=v,
            p_flow_pu=p_flow,
            q_flow_pu=q_flow,
            substation_p_pu=sub_p,
            substation_q_pu=sub_q,
            losses_p_pu=loss.real.sum(axis=0),
            v_angle_rad=angle,
        )
        if squeeze:
            return PowerFlowSolution(**{key: a[..., 0] for key, a in vars(sol).items()})
        return sol

    def _root_voltages(self, v_root_pu: np.ndarray | None, k: int) -> np.ndarray:
        """Root voltage magnitudes as (n_root, K) (default: the feeder's roots)."""
        if v_root_pu is None:
            v_root_pu = self.math.root_v_pu[self.root]
        v_root = np.asarray(v_root_pu, dtype=float)
        if v_root.ndim == 1:
            v_root = np.repeat(v_root[:, None], k, axis=1)
        return v_root

    def loss_terms(
        self,
        p_pu: np.ndarray,
        q_pu: np.ndarray,
        v_root_pu: np.ndarray | None = None,
        *,
        iterations: int = 3,
        angles: PhaseAngles = PhaseAngles.NOMINAL,
    ) -> LossTerms:
        """Second-order correction terms at an operating point (``iterations`` passes).

        The terms :meth:`solve` adds with ``second_order_iterations=iterations``; an
        optimization model built on LinDist3Flow adds them to its right-hand sides to become
        the loss-corrected variant (METHODS §1.5).

        Parameters
        ----------
        p_pu, q_pu : ndarray, shape (N, K)
            Net load per node (p.u.).
        v_root_pu : ndarray, shape (n_root,) or (n_root, K), optional
            Root voltage magnitudes (p.u.; default: the feeder's roots).
        iterations : int
            Fixed-point passes (>= 1).
        angles : PhaseAngles
            ``NOMINAL`` (default): currents at the balanced angles, ``Δv = |Z I|²``.
            ``OPERATING_POINT``: currents at the phasors swept from the roots, ``Δv`` also
            corrects the balanced-γ drop (module docstring); valid near this operating point.
        """
        angles = PhaseAngles(angles)
        p = np.asarray(p_pu, dtype=float).reshape(self.math.n_nodes, -1)
        q = np.asarray(q_pu, dtype=float).reshape(self.math.n_nodes, -1)
        k = p.shape[1]
        v_root = self._root_voltages(v_root_pu, k)
        v_root_sq = v_root**2
        loss = np.zeros((self.n_branch_phases, k), dtype=complex)
        dv = np.zeros((self.n_branch_phases, k))
        phasor = circulating = None
        for _ in range(max(int(iterations), 1)):
            x = self.lu.solve(
                self.rhs(p[self.nonroot] + loss.real, q[self.nonroot] + loss.imag, v_root_sq, dv)
            )
            if angles is PhaseAngles.NOMINAL:
                loss, dv = self._second_order(x, v_root_sq)
            else:
                loss, dv, phasor, circulating = self._second_order_swept(
                    x, v_root, phasor, circulating
                )
        if phasor is None:
            return LossTerms(loss, dv)
        return LossTerms(loss, dv, np.angle(phasor))

    def _second_order(self, x: np.ndarray, v_root_sq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Series losses and |Z I|² from a solution at nominal angles (fixed-point terms)."""
        e = self.n_branch_phases
        pf, qf, vsq = x[:e], x[e : 2 * e], x[2 * e :]
        v_all = np.empty((self.math.n_nodes, x.shape[1]))
        v_all[self.root] = v_root_sq
        v_all[self.nonroot] = vsq
        v_send = np.sqrt(np.maximum(v_all[self._parent], 1e-6)) * self._rho[:, None]
        phasor = v_send * np.exp(1j * self._phase_angle)[:, None]
        current = np.conj((pf + 1j * qf) / phasor)
        drop = self.z @ current
        return drop * np.conj(current), np.abs(drop) ** 2

    def _second_order_swept(
        self,
        x: np.ndarray,
        v_root: np.ndarray,
        phasor: np.ndarray | None,
        circulating: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Correction terms at the phasors swept from the roots (``OPERATING_POINT``).

        Parameters
        ----------
        x : ndarray, shape (3E, K)
            The pass's solution ``[P, Q, v]``.
        v_root : ndarray, shape (n_root, K)
            Root voltage magnitudes (p.u.); root angles are the balanced ones.
        phasor : ndarray of complex, shape (N, K), optional
            Node phasors of the previous pass (``None``: the pass's magnitudes at balanced
            angles).
        circulating : ndarray of complex, shape (n_banks, K), optional
            Current around each closed delta bank of the previous pass (already in the flows
            of ``x``; ``None``: zero).

        Returns
        -------
        flow, drop : ndarray, shape (E, K)
            Series losses ``(Z I) I*`` and the drop-row term
            ``(M_P P + M_Q Q)_n − 2 Re(ρ_n V_parent(n) conj((Z I)_n)) + |(Z I)_n|²``.
        phasor : ndarray of complex, shape (N, K)
            The swept node phasors.
        circulating : ndarray of complex, shape (n_banks, K)
            Current around each closed delta bank; its flow ``V'_k conj(c)`` on winding k is
            part of ``flow`` (the bank's total is zero).
        """
        e = self.n_branch_phases
        pf, qf, vsq = x[:e], x[e : 2 * e], x[2 * e :]
        flow = pf + 1j * qf
        if phasor is None:
            mag = np.empty((self.math.n_nodes, x.shape[1]))
            mag[self.root] = v_root
            mag[self.nonroot] = np.sqrt(np.maximum(vsq, 1e-6))
            phasor = mag * np.exp(1j * self._nominal_angle)[:, None]
        else:
            phasor = phasor.copy()
        root_term = self._sweep_root @ (
            v_root * np.exp(1j * self._nominal_angle[self.root])[:, None]
        )
        k = x.shape[1]
        if circulating is None:
            circulating = np.zeros((len(self._bank_z_sum), k), dtype=complex)
        for _ in range(_SWEEPS_PER_PASS):
            send = self._send_map @ phasor
            current = self._winding_currents(flow, send)[0]
            phasor[self.nonroot] = self.sweep_lu.solve(root_term - self.z @ current)
        send = self._send_map @ phasor
        current, residual = self._winding_currents(flow, send)
        circulating = circulating + residual
        zi = self.z @ current
        linear = self.m_p @ pf + self.m_q @ qf
        parent_sq = np.abs(phasor[self._parent] * self._rho[:, None]) ** 2
        drop = linear + np.abs(send - zi) ** 2 - parent_sq
        loss = zi * np.conj(current)
        rows, partner = self._pair_rows, self._pair_partner
        if len(rows):
            # the winding draws S V_x/(V_x − V_y) from x and −S V_y/(V_x − V_y) from y
            vx, vy = phasor[self._parent[rows]], phasor[partner]
            moved = flow[rows] * (-vy / (vx - vy))
            for nodes, sign in ((self._parent[rows], -1.0), (partner, 1.0)):
                at = self._pos[nodes]
                keep = at >= 0
                np.add.at(loss, at[keep], sign * moved[keep])
        banks = self._bank_rows
        if len(banks):
            loss[banks] += (send - zi)[banks] * np.conj(circulating[self._bank_of])
        return loss, drop, phasor, circulating

    def _winding_currents(
        self, flow: np.ndarray, send: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``conj(S / s)`` per branch-phase, plus what closes each delta bank's KVL.

        Returns the currents and the added current per bank (``Σ(s − z J) / Σ z``).
        """
        current = np.conj(flow / send)
        banks = self._bank_rows
        if not len(banks):
            return current, np.zeros((0, flow.shape[1]), dtype=complex)
        emf = send[banks] - self._bank_z[:, None] * current[banks]
        residual = (self._bank_sum @ emf) / self._bank_z_sum[:, None]
        current[banks] += residual[self._bank_of]
        return current, residual


def net_injections(
    math: MathFeeder,
    load_kw: np.ndarray | None = None,
    load_kvar: np.ndarray | None = None,
    pv_kw: np.ndarray | None = None,
    pv_kvar: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Net nodal load (p.u.) from element powers; defaults are the feeder's operating point.

    Parameters
    ----------
    math : MathFeeder
    load_kw, load_kvar : ndarray, shape (n_loads,) or (n_loads, K)
        Total power of each load (kW, kvar).
    pv_kw, pv_kvar : ndarray, shape (n_pv,) or (n_pv, K)
        PV output (kW, kvar; positive = generation).

    Returns
    -------
    p_pu, q_pu : ndarray, shape (N,) or (N, K)
        Net load per node; generators and storage at their imported dispatch.
    """
    s_load = _complex(load_kw, load_kvar, math.load_kw, math.load_kvar)
    s_pv = _complex(pv_kw, pv_kvar, math.pv_p_kw, math.pv_q_kvar)
    s_gen = math.gen_kw + 1j * math.gen_kvar
    s_st = math.storage_kw + 1j * math.storage_kvar
    parts = [
        math.load_map @ s_load,
        -(math.pv_map @ s_pv),
        -(math.gen_map @ s_gen + math.storage_map @ s_st),
    ]
    if any(part.ndim == 2 for part in parts):
        parts = [part if part.ndim == 2 else part[:, None] for part in parts]
    s = (parts[0] + parts[1] + parts[2]) / math.s_base_kva
    return np.real(s), np.imag(s)


def _complex(p, q, p0, q0) -> np.ndarray:
    p = p0 if p is None else np.asarray(p, dtype=float)
    q = q0 if q is None else np.asarray(q, dtype=float)
    return p + 1j * q
