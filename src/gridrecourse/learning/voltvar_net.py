"""Neural surrogate of the expected Volt-VAR recourse (paper B §III-C/D, eqs 23–30; Table III).

``NN(x, Ξ) = σ_y · MLP([φ(x), E(Ξ)]) + μ_y ≈ Σ_ω π_ω Q(x, ξ_ω)`` (eq 23's affine map with the
training targets' mean and standard deviation):

* ``E`` — the scenario encoder, a forward pass only (never in the MILP): scenario features
  pooled over ω by min/mean/max (eq 25, :func:`~gridrecourse.learning.voltvar_data.
  scenario_features`), a learnable positional encoding per hour, ``n_gcn`` graph convolutions
  per hour ``H ← ReLU(LayerNorm(Â H W))`` on ``Â = D^{-1/2}(A + I)D^{-1/2}`` of the
  all-switches-closed node graph (eq 27), a 1-D convolution along the hours per node (window 4,
  eq 28), pooling of the hours into ``time_pool`` segments, the mean over nodes (Table III:
  spatial aggregation "mean") and the decoder MLP to the embedding ``e`` (eqs 29–30).
* the main network — a ReLU MLP (128/64/32, Table III) on ``[φ(x), e]``, ``φ(x) ∈ [0, 1]``
  (:func:`~gridrecourse.learning.voltvar_data.feature_map`), exported as a
  :class:`~gridrecourse.formulation.relu.ReluNetwork` with ``e`` folded into its first bias.

Training (:func:`train_surrogate`): Adam, batch 64, MSE on standardized targets, a seeded
train/validation split, atomic checkpoints every ``checkpoint_every`` epochs (weights, Adam
state, history, RNG state) so an interrupted run resumes where it stopped. A trained surrogate
(:class:`VoltVarSurrogate`) carries the problem fingerprint it was trained for; using it on a
problem with another feeder or other settings raises :class:`SurrogateMismatchError`.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gridrecourse.errors import GridRecourseError
from gridrecourse.formulation.relu import ReluNetwork
from gridrecourse.learning.voltvar_data import (
    N_CHANNELS,
    VoltVarData,
    closed_adjacency,
    infeasible_samples,
    problem_fingerprint,
    scenario_features,
    unresolved_samples,
)
from gridrecourse.problems.volt_var import VoltVarProblem

__all__ = [
    "SurrogateConfig",
    "SurrogateConfigError",
    "SurrogateMismatchError",
    "TrainingCurve",
    "VoltVarSurrogate",
    "load_surrogate",
    "shipped_surrogate",
    "shipped_surrogate_path",
    "train_surrogate",
]

#: Folder of the networks shipped with the package (package data).
TRAINED_DIR = Path(__file__).with_name("trained")


class SurrogateConfigError(GridRecourseError, ValueError):
    """Invalid surrogate architecture or training settings."""


class SurrogateMismatchError(GridRecourseError, ValueError):
    """A surrogate used on a feeder or settings other than those it was trained on."""


@dataclass(frozen=True)
class SurrogateConfig:
    """Architecture and training settings (paper B Table III; smaller widths: our choice).

    Attributes
    ----------
    gcn : tuple of int
        Widths of the graph convolutions (paper 128, 64; default 32, 16 for the small data).
    conv_channels : int
        Output channels of the temporal convolution.
    window : int
        Temporal window (kernel) length (4, Table III).
    time_pool : int
        Hour segments kept after the convolution.
    decoder : tuple of int
        Decoder MLP widths (64, 32).
    embedding : int
        Size of ``e``.
    main : tuple of int
        Main ReLU MLP widths (128, 64, 32).
    lr, weight_decay : float
        Adam step and L2 penalty.
    batch_size : int
        64.
    epochs : int
    val_fraction : float
        Share of the samples held out for validation.
    checkpoint_every : int
        Epochs between checkpoints.
    infeasible_penalty : float
        Recourse ($) given to a scenario whose recourse MILP is infeasible (so the network
        learns to avoid such first stages; 0 drops those samples).
    seed : int
    """

    gcn: tuple[int, ...] = (32, 16)
    conv_channels: int = 8
    window: int = 4
    time_pool: int = 4
    decoder: tuple[int, ...] = (64, 32)
    embedding: int = 16
    main: tuple[int, ...] = (128, 64, 32)
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 64
    epochs: int = 400
    val_fraction: float = 0.2
    checkpoint_every: int = 20
    infeasible_penalty: float = 10000.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not np.isfinite(self.infeasible_penalty) or self.infeasible_penalty < 0:
            raise SurrogateConfigError(
                "SurrogateConfig.infeasible_penalty must be a finite number >= 0 ($; 0 drops "
                f"infeasible samples), got {self.infeasible_penalty!r}"
            )
        if self.epochs < 1 or self.batch_size < 1:
            raise SurrogateConfigError("SurrogateConfig.epochs and batch_size must be >= 1")

    def architecture(self) -> dict:
        """Settings that fix the weights' shapes."""
        d = asdict(self)
        return {k: d[k] for k in ("gcn", "conv_channels", "window", "time_pool", "decoder",
                                  "embedding", "main")}  # fmt: skip


class ScenarioEncoder(nn.Module):
    """``E(Ξ)``: pooled features ``(B, N, T, 9)`` → embedding ``(B, d_e)`` (eqs 25–30)."""

    def __init__(self, adjacency: np.ndarray, n_periods: int, config: SurrogateConfig):
        super().__init__()
        self.register_buffer("adj", torch.as_tensor(adjacency, dtype=torch.float32))
        self.register_buffer("scale", torch.ones(N_CHANNELS))
        c = config
        self.positional = nn.Parameter(torch.zeros(n_periods, N_CHANNELS))
        widths = (N_CHANNELS, *c.gcn)
        self.gcn = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.norms = nn.ModuleList(nn.LayerNorm(b) for b in widths[1:])
        self.conv = nn.Conv1d(widths[-1], c.conv_channels, c.window)
        self.padding = ((c.window - 1) // 2, c.window // 2)  # "same" length along the hours
        self.pool = nn.AdaptiveAvgPool1d(c.time_pool)
        dec = (c.conv_channels * c.time_pool, *c.decoder)
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(dec):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dec[-1], c.embedding))
        self.decoder = nn.Sequential(*layers)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        b, n, t, _ = feats.shape
        h = feats / self.scale + self.positional[None, None]  # (B, N, T, C)
        h = h.permute(0, 2, 1, 3)  # (B, T, N, C): one graph convolution per hour (eq 27)
        adj = self.adj.to_sparse_coo()  # a few entries per row: a sparse product
        for lin, norm in zip(self.gcn, self.norms, strict=False):
            z = lin(h)  # (B, T, N, C')
            c = z.shape[-1]
            z = torch.sparse.mm(adj, z.permute(2, 0, 1, 3).reshape(n, -1))
            h = torch.relu(norm(z.reshape(n, b, t, c).permute(1, 2, 0, 3)))
        h = h.permute(0, 2, 3, 1).reshape(b * n, -1, t)  # per node: channels × hours
        h = nn.functional.pad(h, self.padding)
        h = self.pool(torch.relu(self.conv(h)))  # (B·N, conv, time_pool)   (eq 28)
        h = h.reshape(b, n, -1).mean(dim=1)  # spatial aggregation: mean (Table III)
        return self.decoder(h)


class SurrogateNet(nn.Module):
    """Encoder + main ReLU MLP; output in standardized units."""

    def __init__(self, adjacency: np.ndarray, n_periods: int, n_features: int,
                 config: SurrogateConfig):  # fmt: skip
        super().__init__()
        self.encoder = ScenarioEncoder(adjacency, n_periods, config)
        widths = (n_features + config.embedding, *config.main)
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], 1))
        self.main = nn.Sequential(*layers)

    def forward(self, phi: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        return self.main(torch.cat([phi, self.encoder(feats)], dim=1)).squeeze(1)


@dataclass(frozen=True, eq=False)
class TrainingCurve:
    """Per-epoch losses (MSE on standardized targets) and wall time.

    Attributes
    ----------
    train, val : ndarray, shape (epochs,)
    val_mae : ndarray, shape (epochs,)
        Validation mean absolute error ($ of expected recourse).
    seconds : float
    """

    train: np.ndarray
    val: np.ndarray
    val_mae: np.ndarray
    seconds: float


@dataclass(frozen=True, eq=False)
class VoltVarSurrogate:
    """A trained surrogate with what it was trained on.

    Attributes
    ----------
    net : SurrogateNet
    config : SurrogateConfig
    target_mean, target_std : float
        ``μ_y``, ``σ_y`` of eq 23 ($).
    fingerprint : dict
        :func:`~gridrecourse.learning.voltvar_data.problem_fingerprint` of the training problem.
    info : dict
        Data settings and hash, sample counts, validation figures, training curve.
    starts : ndarray of uint8, shape (k, n_primary)
        The training data's kernel first stages (deterministic VVO solutions of training
        scenarios), primary columns only (:meth:`VoltVarProblem.primary_columns`): MIP start
        candidates of the surrogate MILP, computed offline with the data.
    """

    net: SurrogateNet
    config: SurrogateConfig
    target_mean: float
    target_std: float
    fingerprint: dict
    info: dict = field(default_factory=dict)
    starts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.uint8))

    def start_candidates(self, problem: VoltVarProblem) -> list[np.ndarray]:
        """The kernel first stages completed for ``problem`` (checked against it first)."""
        self.check(problem)
        return [problem.complete_first_stage(p.astype(float)) for p in self.starts]

    def check(self, problem: VoltVarProblem) -> None:
        """Raise :class:`SurrogateMismatchError` unless ``problem`` matches the training one."""
        now = json.loads(json.dumps(problem_fingerprint(problem)))
        was = self.fingerprint
        diffs = []
        for key in ("feeder", "n_nodes", "n_first_stage", "model_hash"):
            if now.get(key) != was.get(key):
                diffs.append(f"{key}: trained {was.get(key)!r}, here {now.get(key)!r}")
        s_now, s_was = now.get("settings", {}), was.get("settings", {})
        diffs += [
            f"{k}: trained {s_was.get(k)!r}, here {s_now.get(k)!r}"
            for k in sorted(set(s_now) | set(s_was))
            if s_now.get(k) != s_was.get(k)
        ]
        if diffs:
            raise SurrogateMismatchError(
                f"the neural surrogate was trained on feeder {was.get('feeder')!r} with other "
                f"settings than this problem ({'; '.join(diffs)}); train one for it with "
                "`gridrecourse voltvar-train`"
            )

    def embed(self, problem: VoltVarProblem, scenarios: np.ndarray | None = None) -> np.ndarray:
        """Embedding ``e`` of the problem's scenario set (forward pass of the encoder)."""
        idx = np.arange(problem.n_scenarios) if scenarios is None else np.asarray(scenarios)
        feats = torch.as_tensor(scenario_features(problem, idx))[None]
        with torch.no_grad():
            return self.net.encoder(feats)[0].double().numpy()

    def main_network(self) -> ReluNetwork:
        """The main MLP (standardized output) as a :class:`ReluNetwork` (float64)."""
        lin = [m for m in self.net.main if isinstance(m, nn.Linear)]
        return ReluNetwork(
            tuple(m.weight.detach().double().numpy() for m in lin),
            tuple(m.bias.detach().double().numpy() for m in lin),
        )

    def predict(self, phi: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        """Predicted expected recourse ($) for inputs ``φ (B, n_features)`` and one ``e``."""
        phi = np.atleast_2d(phi)
        inp = np.hstack([phi, np.repeat(np.asarray(embedding)[None], len(phi), axis=0)])
        return self.main_network().forward(inp)[:, 0] * self.target_std + self.target_mean

    def save(self, path: str | os.PathLike) -> None:
        """Write weights and metadata (atomic; readable with ``weights_only=True``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "state_dict": self.net.state_dict(),
            "config": json.dumps(asdict(self.config)),
            "target": [float(self.target_mean), float(self.target_std)],
            "fingerprint": json.dumps(self.fingerprint),
            "info": json.dumps(self.info),
            "starts": torch.as_tensor(np.asarray(self.starts, dtype=np.uint8)),
            "shape": [
                int(self.net.encoder.adj.shape[0]),
                int(self.net.encoder.positional.shape[0]),
                int(self.net.main[0].in_features - self.config.embedding),
            ],
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)


def _config_from(text: str) -> SurrogateConfig:
    raw = json.loads(text)
    return SurrogateConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def load_surrogate(path: str | os.PathLike) -> VoltVarSurrogate:
    """Read a surrogate written by :meth:`VoltVarSurrogate.save`."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    config = _config_from(state["config"])
    n_nodes, n_periods, n_features = state["shape"]
    net = SurrogateNet(np.eye(n_nodes), n_periods, n_features, config)
    net.load_state_dict(state["state_dict"])
    net.eval()
    mean, std = state["target"]
    kept = {"starts": state["starts"].numpy()} if "starts" in state else {}  # older files: none
    return VoltVarSurrogate(
        net, config, mean, std, json.loads(state["fingerprint"]), json.loads(state["info"]),
        **kept,
    )  # fmt: skip


def shipped_surrogate_path(problem: VoltVarProblem) -> Path:
    """Path of the shipped network for the problem's feeder and monitoring set."""
    return TRAINED_DIR / f"voltvar-{problem.math.name}-{problem.config.monitor.value}.pt"


def shipped_surrogate(problem: VoltVarProblem) -> VoltVarSurrogate:
    """The network shipped for this feeder and monitoring set, checked against the problem.

    Raises
    ------
    SurrogateMismatchError
        No network ships for the feeder/monitoring set, or it was trained on other settings.
    """
    path = shipped_surrogate_path(problem)
    if not path.exists():
        have = sorted(p.stem for p in TRAINED_DIR.glob("voltvar-*.pt"))
        raise SurrogateMismatchError(
            f"no trained network ships for feeder {problem.math.name!r} with monitoring "
            f"{problem.config.monitor.value!r} (shipped: {have}); train one with "
            "`gridrecourse voltvar-train` and pass it with --network"
        )
    surrogate = load_surrogate(path)
    surrogate.check(problem)
    return surrogate


# ---------------------------------------------------------------------------- training
def _targets(data: VoltVarData, penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """Expected recourse per sample with infeasible scenarios at ``penalty``, and the mask of
    samples to train on: never one with an unresolved scenario (NaN, no label), and with
    ``penalty = 0`` none with an infeasible one either."""
    q = np.where(np.isfinite(data.recourse), data.recourse, penalty)
    keep = ~unresolved_samples(data.recourse)
    if penalty <= 0:
        keep &= ~infeasible_samples(data.recourse)
    return q.mean(axis=1), keep


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_val = round(fraction * n) if n > 4 else 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def train_surrogate(
    problem: VoltVarProblem,
    data: VoltVarData,
    config: SurrogateConfig | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
    stop_after_epochs: int | None = None,
    max_samples: int | None = None,
) -> tuple[VoltVarSurrogate, TrainingCurve]:
    """Train the surrogate on ``data`` (resumable through ``checkpoint``).

    Parameters
    ----------
    problem : VoltVarProblem
        The data's feeder and settings (adjacency, fingerprint).
    data : VoltVarData
    config : SurrogateConfig, optional
    checkpoint : path, optional
        Checkpoint file; an existing one of the same set-up is resumed.
    log : callable, optional
        Progress lines (default stderr every ``checkpoint_every`` epochs).
    stop_after_epochs : int, optional
        Stop after this many epochs in this call (an interruption, for tests).
    max_samples : int, optional
        Use only the first samples (learning curves).

    Returns
    -------
    (VoltVarSurrogate, TrainingCurve)
    """
    cfg = config or SurrogateConfig()
    say = log or (lambda s: print(s, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    n_all = len(data.target) if max_samples is None else min(max_samples, len(data.target))
    y_all, keep = _targets(data, cfg.infeasible_penalty)
    use = np.flatnonzero(keep[:n_all])
    phi = torch.as_tensor(data.features[use], dtype=torch.float32)
    feats = torch.as_tensor(data.encoder_input[use], dtype=torch.float32)
    y = y_all[use]
    train_idx, val_idx = _split(len(use), cfg.val_fraction, cfg.seed)
    mean = float(y[train_idx].mean())
    std = float(y[train_idx].std()) or 1.0
    y_std = torch.as_tensor((y - mean) / std, dtype=torch.float32)
    torch.manual_seed(cfg.seed)
    adj = closed_adjacency(problem).toarray()
    net = SurrogateNet(adj, problem.n_periods, phi.shape[1], cfg)
    scale = feats[train_idx].abs().amax(dim=(0, 1, 2)).clamp_min(1e-6)
    net.encoder.scale.copy_(scale)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    setup = {"config": asdict(cfg), "n_samples": len(use), "data": data.meta}
    setup = json.loads(json.dumps(setup))
    history: dict[str, list[float]] = {"train": [], "val": [], "val_mae": []}
    start = 0
    ck = Path(checkpoint) if checkpoint is not None else None
    if ck is not None and ck.exists():
        state = torch.load(ck, map_location="cpu", weights_only=False)
        if state["setup"] != setup:
            raise SurrogateMismatchError(
                f"checkpoint {ck} belongs to another training set-up; delete it or pass another"
            )
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        history = state["history"]
        start = int(state["epoch"])
        torch.set_rng_state(state["rng"])
        say(f"resumed from {ck} at epoch {start}")
    ran = 0
    for epoch in range(start, cfg.epochs):
        if stop_after_epochs is not None and ran >= stop_after_epochs:
            break
        net.train()
        order = train_idx[torch.randperm(len(train_idx)).numpy()]
        total = 0.0
        for b in range(0, len(order), cfg.batch_size):
            batch = order[b : b + cfg.batch_size]
            opt.zero_grad()
            loss = torch.mean((net(phi[batch], feats[batch]) - y_std[batch]) ** 2)
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        net.eval()
        with torch.no_grad():
            if len(val_idx):
                pv = net(phi[val_idx], feats[val_idx])
                val = float(torch.mean((pv - y_std[val_idx]) ** 2))
                mae = float(torch.mean(torch.abs(pv - y_std[val_idx]))) * std
            else:
                val = mae = float("nan")
        history["train"].append(total / max(len(order), 1))
        history["val"].append(val)
        history["val_mae"].append(mae)
        ran += 1
        last = epoch + 1 == cfg.epochs
        if (epoch + 1) % cfg.checkpoint_every == 0 or last:
            if ck is not None:
                tmp = ck.with_name(ck.name + ".tmp")
                ck.parent.mkdir(parents=True, exist_ok=True)
                torch.save(
                    {"setup": setup, "net": net.state_dict(), "opt": opt.state_dict(),
                     "history": history, "epoch": epoch + 1, "rng": torch.get_rng_state()},
                    tmp,
                )  # fmt: skip
                os.replace(tmp, ck)
            say(
                f"epoch {epoch + 1}/{cfg.epochs}: train MSE {history['train'][-1]:.4f}, "
                f"val MSE {val:.4f}, val MAE {mae:.2f} $"
            )
    net.eval()
    curve = TrainingCurve(
        np.array(history["train"]), np.array(history["val"]), np.array(history["val_mae"]),
        time.perf_counter() - t0,
    )  # fmt: skip
    info = {
        "data": data.meta.get("data"),
        "data_hash": data.meta.get("hash"),
        "n_samples": len(use),
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "n_infeasible_samples": int(data.infeasible[:n_all].sum()),
        "n_unresolved_samples": int(data.unresolved[:n_all].sum()),
        "epochs": len(history["train"]),
        "final_val_mae": history["val_mae"][-1] if history["val_mae"] else None,
        "target_range": [float(y.min()), float(y.max())],
        "history": history,
    }
    fp = data.meta.get("problem") or problem_fingerprint(problem)
    primary = problem.primary_columns()
    starts = (
        np.rint(data.kernels[:, primary]).astype(np.uint8)
        if data.kernels.size
        else np.zeros((0, primary.size), dtype=np.uint8)
    )
    return VoltVarSurrogate(net, cfg, mean, std, fp, info, starts), curve
