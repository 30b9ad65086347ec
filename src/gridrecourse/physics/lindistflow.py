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

Windings between two parent phases (``MathFeeder.send_partner``: a single-phase winding on
(x, y) such as a line-to-line regulator, the delta primary of a Δ–Y bank) see ``V_x − V_y``.
A winding carrying ``S_n`` draws ``S_n V_x/(V_x − V_y)`` from x and ``−S_n V_y/(V_x − V_y)``
from y; at balanced angles these shares are constant complex factors (for (a, b):
``V_a − V_b = √3∠30°``, shares ``∠−30°/√3`` and ``∠30°/√3``), so the balance rows of x and y
carry ``Re(c S_n)``, ``Im(c S_n)`` of the child's flow: linear in (P, Q), as delta loads are in
Gan & Low's and Arnold et al.'s three-phase LinDistFlow. The P and Q balances then mix
(:attr:`LinDist3Flow.coupled`). The drop row of such a node uses the pair,
``|V_x − V_y|²/3 ≈ (v_x + v_y)/2 + σ (δ_x − δ_y)/√3`` (first order in the magnitudes and in the
angle drifts δ of x and y from the balanced angles, σ = sign sin(θ_x − θ_y)); the drifts are
first order in the flows above (``δ_n = δ_parent(n) − Im((Z I)_n e^{−jθ_n})``), so they enter
as extra ``M_P``, ``M_Q`` terms of those rows (:meth:`LinDist3Flow._pair_angle_terms`). On the
hand-built open-delta regulator feeder this takes the balanced-angle loss-corrected error from
0.029 to 0.0003 p.u. (all power from x and ``ρ² v_x`` before).

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
  (``MathFeeder.send_partner``) and move the difference between the operating point's shares
  of their power and the rows' balanced ones between x and y; around a closed delta
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
#: Right-hand sides per triangular solve when building the pair rows' angle terms.
_PAIR_CHUNK = 256


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
        child_idx = np.arange(e)
        self._pos, self._parent = pos, par
        theta = np.array([_NOMINAL_ANGLE[int(p)] for p in math.node_phase])
        # A winding between two parent phases x, y (MathFeeder.send_partner) draws
        # S V_x/(V_x − V_y) from x and −S V_y/(V_x − V_y) from y: at balanced angles constant
        # complex shares (c_x + c_y = 1); every other branch-phase draws S from its parent.
        partner = getattr(math, "send_partner", None)
        partner = np.full(n, -1) if partner is None else np.asarray(partner, dtype=int)
        self._pair_rows = np.flatnonzero(partner[self.nonroot] >= 0)
        self._pair_partner = partner[self.nonroot][self._pair_rows]
        ex, ey = np.exp(1j * theta[par[self._pair_rows]]), np.exp(1j * theta[self._pair_partner])
        share_x = ex / (ex - ey)
        #: complex share of each pair row's power drawn from its partner phase y.
        self.pair_share = 1.0 - share_x
        draw_node = np.concatenate([par, self._pair_partner])
        draw_row = np.concatenate([child_idx, self._pair_rows])
        draw_share = np.ones(e, dtype=complex)
        draw_share[self._pair_rows] = share_x
        draw_share = np.concatenate([draw_share, self.pair_share])
        from_nonroot = pos[draw_node] >= 0
        #: (E, E) complex: share of branch-phase m's power drawn through branch-phase n.
        self.children = sp.csr_matrix(
            (draw_share[from_nonroot], (pos[draw_node[from_nonroot]], draw_row[from_nonroot])),
            shape=(e, e),
        )
        #: (n_root, E) complex: share of each branch-phase's power drawn from each root node.
        self.root_share = sp.csr_matrix(
            (draw_share[~from_nonroot], (rpos[draw_node[~from_nonroot]], draw_row[~from_nonroot])),
            shape=(len(self.root), e),
        )
        eye = sp.identity(e, format="csr")
        c_re, c_im = _real_part(self.children), _imag_part(self.children)
        #: The balance rows ``[[flow_pp, flow_pq], [flow_qp, flow_qq]] [P; Q] = [p; q]``:
        #: ``P_n − Σ_m Re(c_nm S_m)`` and ``Q_n − Σ_m Im(c_nm S_m)``. Without windings between
        #: two parent phases ``flow_pq = flow_qp = 0`` and ``flow_pp = flow_qq = flow``.
        self.flow = (eye - c_re).tocsr()
        self.flow_pp = self.flow
        self.flow_pq = c_im.tocsr()
        self.flow_qp = (-c_im).tocsr()
        self.flow_qq = self.flow
        #: True when some balance row mixes P and Q (a pair row below a non-root parent).
        self.coupled = self.flow_pq.nnz > 0
        #: (n_root, E): real part of :attr:`root_share` (the active power leaving each root is
        #: ``root_outflow @ P − root_outflow_q @ Q``).
        self.root_outflow = _real_part(self.root_share)
        self.root_outflow_q = _imag_part(self.root_share)
        # Sending voltage: ρ² v_parent, or for a pair row ρ² |V_x − V_y|²/3 ≈ ρ² (v_x + v_y)/2
        # at balanced angles (first order in the magnitudes).
        rho2 = math.ratio[self.nonroot] ** 2
        v_share = np.ones(e)
        v_share[self._pair_rows] = 0.5
        v_share = np.concatenate([v_share, np.full(len(self._pair_rows), 0.5)])
        #: (E, N): weights of the nodes' squared voltages in each branch-phase's sending
        #: voltage before ρ² (1 on the parent; ½ on x and on y for a pair row).
        self.parent_weight = sp.csr_matrix((v_share, (draw_row, draw_node)), shape=(e, n))
        v_val = np.concatenate([rho2, rho2[self._pair_rows]]) * v_share
        self.voltage_parent = sp.csr_matrix(
            (v_val[from_nonroot], (draw_row[from_nonroot], pos[draw_node[from_nonroot]])),
            shape=(e, e),
        )
        #: (E, n_root): the ρ² weights of root voltages in the drop rows.
        self.voltage_root = sp.csr_matrix(
            (v_val[~from_nonroot], (draw_row[~from_nonroot], rpos[draw_node[~from_nonroot]])),
            shape=(e, len(self.root)),
        )
        z = math.z_pu[self.nonroot][:, self.nonroot].tocoo()
        self.z = sp.csr_matrix((z.data, (z.row, z.col)), shape=(e, e))
        phase = math.node_phase[self.nonroot]
        g = GAMMA[phase[z.row] - 1, phase[z.col] - 1]
        gz = g * np.conj(z.data)
        self.m_p = sp.csr_matrix((2 * gz.real, (z.row, z.col)), shape=(e, e))
        self.m_q = sp.csr_matrix((-2 * gz.imag, (z.row, z.col)), shape=(e, e))
        if len(self._pair_rows):
            angle_parent = sp.csr_matrix(
                (v_share[from_nonroot], (draw_row[from_nonroot], pos[draw_node[from_nonroot]])),
                shape=(e, e),
            )
            sigma = np.sign(np.sin(theta[par[self._pair_rows]] - theta[self._pair_partner]))
            k_p, k_q = self._pair_angle_terms(angle_parent, sigma)
            self.m_p = (self.m_p + k_p).tocsr()
            self.m_q = (self.m_q + k_q).tocsr()
        self.cap_b = math.cap_b_pu[self.nonroot]
        self.system = sp.bmat(
            [
                [self.flow_pp, self.flow_pq, None],
                [self.flow_qp, self.flow_qq, sp.diags(self.cap_b)],
                [self.m_p, self.m_q, eye - self.voltage_parent],
            ],
            format="csc",
        )
        self._lu = None
        self._flow_lu = None
        self._sweep_lu = None
        self._nominal_angle = theta
        self._phase_angle = self._nominal_angle[self.nonroot]
        self._rho = math.ratio[self.nonroot]
        # The phasor sweep ``V_n − s_n = −(Z I)_n`` over non-root nodes with the sending phasor
        # s_n = ρ_n V_parent(n), or ρ_n c_n (V_x − V_y) for a winding between two parent phases
        # x, y (MathFeeder.send_partner; c_n makes it V_x's angle at balanced voltages).
        self._pair_c = np.exp(1j * theta[self.nonroot][self._pair_rows]) / (ex - ey)
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

    def _pair_angle_terms(
        self, angle_parent: sp.csr_matrix, weight: np.ndarray
    ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Drop-row terms of the pair rows from the phase-angle drift of their parents.

        ``|V_x − V_y|²/3 ≈ (v_x + v_y)/2 + σ (δ_x − δ_y)/√3`` with δ the angle deviation from
        the balanced angles (rad) and ``σ = sign sin(θ_x − θ_y)``. To first order the drift
        follows the series drops at balanced angles, ``δ_n = δ_parent(n) − Im(w_n)`` with
        ``w_n = (Z I)_n e^{−jθ_n}``, ``Im(w) = (M_Q P − M_P Q)/2`` (a pair row's parent angle
        is the mean of x and y; roots have δ = 0), so the term is linear in (P, Q).

        Parameters
        ----------
        angle_parent : scipy.sparse.csr_matrix, shape (E, E)
            Weights of the parents' angles in each branch-phase's angle.
        weight : ndarray, shape (n_pair,)
            ``σ`` of each pair row. The exact term carries ``ρ²``; ``(ρ² − 1) δ`` is second
            order, and without it the term does not depend on the tap (the tap model's rows,
            :mod:`gridrecourse.formulation.taps`, equal the fixed model's at every tap).

        Returns
        -------
        k_p, k_q : scipy.sparse.csr_matrix, shape (E, E)
            Added to :attr:`m_p` and :attr:`m_q` (rows of pair rows only).
        """
        e = self.n_branch_phases
        rows = self._pair_rows
        at_x, at_y = self._pos[self._parent[rows]], self._pos[self._pair_partner]
        lu = splu(sp.csc_matrix(sp.identity(e, format="csr") - angle_parent).T.tocsc())
        blocks = []
        for start in range(0, len(rows), _PAIR_CHUNK):
            chunk = slice(start, start + _PAIR_CHUNK)
            rhs = np.zeros((e, len(rows[chunk])))
            cols = np.arange(rhs.shape[1])
            for at, sign in ((at_x[chunk], 1.0), (at_y[chunk], -1.0)):
                keep = at >= 0
                rhs[at[keep], cols[keep]] += sign
            blocks.append(sp.csr_matrix(lu.solve(rhs).T))
        # g_k = (I − angle_parent)^{-T} (e_x − e_y): δ_x − δ_y = −g_kᵀ Im(w)
        g = sp.vstack(blocks).tocsr()
        g = sp.diags(weight / np.sqrt(3.0)) @ g
        select = sp.csr_matrix(
            (np.ones(len(rows)), (rows, np.arange(len(rows)))), shape=(e, len(rows))
        )
        k_p = select @ (g @ (0.5 * self.m_q))
        k_q = select @ (g @ (-0.5 * self.m_p))
        return sp.csr_matrix(k_p), sp.csr_matrix(k_q)

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
    def flow_lu(self):
        """Sparse LU of the balance block ``[[flow_pp, flow_pq], [flow_qp, flow_qq]]``."""
        if self._flow_lu is None:
            self._flow_lu = splu(
                sp.bmat([[self.flow_pp, self.flow_pq], [self.flow_qp, self.flow_qq]], format="csc")
            )
        return self._flow_lu

    def solve_flows(self, s_pu: np.ndarray) -> np.ndarray:
        """Sending-end flows ``P + jQ`` of every branch-phase for complex injections.

        Parameters
        ----------
        s_pu : ndarray of complex, shape (E,) or (E, K)
            Complex power leaving the network at each non-root node (p.u.; a capacitor's
            ``−j b v`` included by the caller).

        Returns
        -------
        ndarray of complex, shape of ``s_pu``
            The balance rows solved for ``P + jQ`` (p.u.).
        """
        s = np.asarray(s_pu, dtype=complex)
        e = self.n_branch_phases
        x = self.flow_lu.solve(np.ascontiguousarray(np.concatenate([s.real, s.imag], axis=0)))
        return x[:e] + 1j * x[e:]

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
        out = self.root_share @ (pf + 1j * qf)
        sub_p = (out.real + p[self.root]).sum(axis=0)
        sub_q = (out.imag + q[self.root] - cap_root).sum(axis=0)
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
        mag = np.sqrt(np.maximum(v_all, 1e-6))
        send = np.abs(self._send_map @ (mag * np.exp(1j * self._nominal_angle)[:, None]))
        phasor = send * np.exp(1j * self._phase_angle)[:, None]
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
        mag_sq = np.abs(phasor) ** 2
        # the rows' sending term (ρ² v_parent, a pair's ρ² (v_x + v_y)/2) at the swept phasors
        parent_sq = (
            self.voltage_parent @ mag_sq[self.nonroot] + self.voltage_root @ mag_sq[self.root]
        )
        drop = linear + np.abs(send - zi) ** 2 - parent_sq
        loss = zi * np.conj(current)
        rows, partner = self._pair_rows, self._pair_partner
        if len(rows):
            # the winding draws −S V_y/(V_x − V_y) from y; the rows take the balanced share
            vx, vy = phasor[self._parent[rows]], phasor[partner]
            moved = flow[rows] * (-vy / (vx - vy) - self.pair_share[:, None])
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


def _real_part(m: sp.spmatrix) -> sp.csr_matrix:
    """Real part of a complex sparse matrix, explicit zeros removed."""
    out = sp.csr_matrix(m.real if np.iscomplexobj(m.data) else m, dtype=float)
    out.eliminate_zeros()
    return out


def _imag_part(m: sp.spmatrix) -> sp.csr_matrix:
    """Imaginary part of a complex sparse matrix, explicit zeros removed."""
    out = sp.csr_matrix(m.imag if np.iscomplexobj(m.data) else m * 0.0, dtype=float)
    out.eliminate_zeros()
    return out


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
