"""LSTM quantile (box) predictor of price and bus loads (paper A, METHODS §5).

:class:`LSTMQuantilePredictor` maps the last M hours of F features to a box
``[lower, upper]`` for the next τ hours of K targets — the α/2 and 1 − α/2 quantiles
``f^{α/2}, f^{1−α/2}`` of paper A (eq 22). ``upper = lower + softplus(width) ≥ lower`` by
construction. :func:`train_predictor` fits it on a prediction loss (eq 20, see
:mod:`gridrecourse.learning.losses`), deterministically from a seed, with optional per-epoch
checkpoints that make an interrupted run resumable. Calibrate the boxes afterwards with
:mod:`gridrecourse.uncertainty.conformal` (eqs 21–23). CPU only.

Determinism: weights are initialized from ``config.seed`` (the global torch RNG is left
untouched), and every epoch draws its shuffling and dropout from a generator seeded by
``(seed, epoch)``. A run resumed from a checkpoint (weights + Adam state + history) therefore
repeats exactly the epochs an uninterrupted run would do, and ends with bit-identical weights
on the same machine and thread count.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from gridrecourse.errors import GridRecourseError
from gridrecourse.learning.losses import LossKind, box_loss
from gridrecourse.learning.windows import WindowedData
from gridrecourse.uncertainty.conformal import Box, check_alpha

CHECKPOINT_FORMAT = 1


class PredictorInputError(GridRecourseError, ValueError):
    """Data or settings do not fit the predictor (shapes, sizes, hyper-parameters)."""


class CheckpointError(GridRecourseError, ValueError):
    """A checkpoint cannot be read or belongs to a different model/training set-up."""


@dataclass(frozen=True)
class PredictorConfig:
    """Architecture and training settings of :class:`LSTMQuantilePredictor`.

    Attributes
    ----------
    hidden_size : int
        LSTM hidden units per layer.
    num_layers : int
        Stacked LSTM layers (1 or 2 are typical).
    dropout : float
        Dropout probability between LSTM layers and before the output head.
    lr : float
        Adam learning rate.
    weight_decay : float
        Adam L2 penalty.
    epochs : int
        Passes over the training set.
    batch_size : int
        Samples per gradient step.
    seed : int
        Seed of weight initialization, shuffling and dropout.
    alpha : float
        Miscoverage level α of the predicted box (quantiles α/2 and 1 − α/2).
    loss : LossKind
        Training loss (eq 20): pinball (default) or the paper's Gaussian NLL.
    grad_clip : float or None
        Max global gradient norm (``None``: no clipping).
    """

    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.0
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 30
    batch_size: int = 64
    seed: int = 0
    alpha: float = 0.1
    loss: LossKind = LossKind.PINBALL
    grad_clip: float | None = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "loss", LossKind(self.loss))
        check_alpha(self.alpha)
        for name in ("hidden_size", "num_layers", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise PredictorInputError(f"{name} must be ≥ 1, got {getattr(self, name)!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise PredictorInputError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not self.lr > 0.0:
            raise PredictorInputError(f"lr must be > 0, got {self.lr!r}")


class BoxTensors(NamedTuple):
    """Predicted box, each of shape (batch, τ, K), ``upper ≥ lower``."""

    lower: torch.Tensor
    upper: torch.Tensor


class LSTMQuantilePredictor(nn.Module):
    """LSTM → linear head giving a lower bound and a non-negative width per output.

    ``h = LSTM(x)[:, -1]`` (last hidden state), ``[l, w] = W·dropout(h) + b``,
    ``lower = l``, ``upper = l + softplus(w)``, reshaped to (batch, τ, K).

    Parameters
    ----------
    n_features : int
        F, input series per hour.
    horizon : int
        τ, predicted hours.
    n_targets : int
        K, predicted series (price + bus loads).
    config : PredictorConfig
        Architecture (hidden size, layers, dropout) and the seed of the initial weights.
    """

    def __init__(
        self,
        n_features: int,
        horizon: int,
        n_targets: int,
        config: PredictorConfig | None = None,
    ) -> None:
        super().__init__()
        self.config = config if config is not None else PredictorConfig()
        for name, value in (
            ("n_features", n_features),
            ("horizon", horizon),
            ("n_targets", n_targets),
        ):
            if int(value) < 1:
                raise PredictorInputError(f"{name} must be ≥ 1, got {value!r}")
        self.n_features = int(n_features)
        self.horizon = int(horizon)
        self.n_targets = int(n_targets)
        c = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            self.lstm = nn.LSTM(
                input_size=self.n_features,
                hidden_size=c.hidden_size,
                num_layers=c.num_layers,
                dropout=c.dropout if c.num_layers > 1 else 0.0,
                batch_first=True,
            )
            self.dropout = nn.Dropout(c.dropout)
            self.head = nn.Linear(c.hidden_size, 2 * self.horizon * self.n_targets)

    def forward(self, x: torch.Tensor) -> BoxTensors:
        """Predict boxes for inputs ``x`` of shape (batch, M, F); returns (batch, τ, K) twice."""
        if x.ndim != 3 or x.shape[2] != self.n_features:
            raise PredictorInputError(
                f"expected input of shape (batch, M, F={self.n_features}), got {tuple(x.shape)}"
            )
        out, _ = self.lstm(x)
        raw = self.head(self.dropout(out[:, -1, :]))
        n_out = self.horizon * self.n_targets
        shape = (x.shape[0], self.horizon, self.n_targets)
        lower = raw[:, :n_out].reshape(shape)
        width = nn.functional.softplus(raw[:, n_out:]).reshape(shape)
        return BoxTensors(lower, lower + width)

    @torch.no_grad()
    def predict(self, x: np.ndarray, batch_size: int = 1024) -> Box:
        """Boxes for a numpy input (N, M, F) in eval mode (no dropout); numpy (N, τ, K) out."""
        was_training = self.training
        self.eval()
        try:
            xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
            parts = [self(xt[i : i + batch_size]) for i in range(0, xt.shape[0], batch_size)]
        finally:
            self.train(was_training)
        if not parts:
            empty = np.empty((0, self.horizon, self.n_targets))
            return Box(empty, empty.copy())
        lower = torch.cat([p.lower for p in parts]).double().numpy()
        upper = torch.cat([p.upper for p in parts]).double().numpy()
        return Box(lower, upper)


@dataclass(frozen=True)
class EpochReport:
    """What the progress callback receives after each finished epoch.

    Attributes
    ----------
    epoch : int
        1-based number of the epoch just finished.
    n_epochs : int
        Epochs requested in total.
    train_loss, val_loss : float
        Mean training loss (train mode) and validation loss (eval mode; NaN without
        validation data), in the loss's units on the (standardized) targets.
    seconds : float
        Wall time of the epoch (s).
    """

    epoch: int
    n_epochs: int
    train_loss: float
    val_loss: float
    seconds: float


#: Progress hook: called after every epoch (after the checkpoint is written); returning
#: ``True`` stops training early.
ProgressCallback = Callable[[EpochReport], "bool | None"]


@dataclass
class TrainingHistory:
    """Per-epoch record of :func:`train_predictor` (all finished epochs, resumed ones included).

    Attributes
    ----------
    train_loss, val_loss : list of float
        Per-epoch mean training / validation loss (NaN without validation data).
    epoch_seconds : list of float
        Wall time per epoch (s); epochs done before a resume keep their original times.
    loss : LossKind
        Loss used.
    alpha : float
        Miscoverage level of the predicted box.
    resumed_from_epoch : int
        Epochs loaded from the checkpoint (0 for a fresh run).
    stopped_early : bool
        The progress callback asked to stop before the requested number of epochs.
    """

    loss: LossKind
    alpha: float
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    resumed_from_epoch: int = 0
    stopped_early: bool = False

    @property
    def n_epochs(self) -> int:
        """Number of finished epochs."""
        return len(self.train_loss)

    @property
    def best_epoch(self) -> int:
        """1-based epoch with the lowest validation loss (training loss if no validation)."""
        values = (
            self.val_loss if not all(math.isnan(v) for v in self.val_loss) else (self.train_loss)
        )
        return int(np.nanargmin(values)) + 1 if values else 0


def _to_tensors(data: WindowedData, model: LSTMQuantilePredictor, name: str):
    if len(data) == 0:
        raise PredictorInputError(f"{name} set is empty")
    expected = (model.horizon, model.n_targets)
    if data.n_features != model.n_features or data.y.shape[1:] != expected:
        raise PredictorInputError(
            f"{name} windows have x{data.x.shape}, y{data.y.shape}; the model expects "
            f"F={model.n_features} features and y of shape (N, tau={model.horizon}, "
            f"K={model.n_targets})"
        )
    x = torch.as_tensor(data.x, dtype=torch.float32)
    y = torch.as_tensor(data.y, dtype=torch.float32)
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise PredictorInputError(f"{name} windows contain NaN or infinite values")
    return x, y


def _epoch_seed(seed: int, epoch: int) -> int:
    """Independent seed of epoch ``epoch`` (0-based) of a run seeded with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


@torch.no_grad()
def _evaluate(
    model: LSTMQuantilePredictor,
    x: torch.Tensor,
    y: torch.Tensor,
    kind: LossKind,
    alpha: float,
    batch_size: int = 1024,
) -> float:
    model.eval()
    total = 0.0
    for i in range(0, x.shape[0], batch_size):
        box = model(x[i : i + batch_size])
        total += (
            float(box_loss(kind, box.lower, box.upper, y[i : i + batch_size], alpha))
            * (box.lower.shape[0])
        )
    return total / x.shape[0]


def _fingerprint(
    model: LSTMQuantilePredictor, kind: LossKind, alpha: float, seed: int, n_train: int
) -> dict[str, Any]:
    """Settings a checkpoint must share with the run resuming from it (epochs excluded)."""
    c = model.config
    return {
        "format": CHECKPOINT_FORMAT,
        "n_features": model.n_features,
        "horizon": model.horizon,
        "n_targets": model.n_targets,
        "hidden_size": c.hidden_size,
        "num_layers": c.num_layers,
        "dropout": c.dropout,
        "lr": c.lr,
        "weight_decay": c.weight_decay,
        "batch_size": c.batch_size,
        "grad_clip": c.grad_clip,
        "loss": kind.value,
        "alpha": alpha,
        "seed": seed,
        "n_train": n_train,
    }


def save_checkpoint_atomic(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` with :func:`torch.save` to a temporary file, then ``os.replace`` it.

    A crash while writing leaves the previous checkpoint intact (the replace is atomic on the
    same file system).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load_checkpoint(path: Path, expected: dict[str, Any]) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    found = state.get("fingerprint", {}) if isinstance(state, dict) else {}
    diff = {k: (found.get(k), v) for k, v in expected.items() if found.get(k) != v}
    if diff:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(
            f"checkpoint {path} was written by a different set-up ({detail}); delete it or "
            "pass another checkpoint_path"
        )
    return state


def train_predictor(
    model: LSTMQuantilePredictor,
    train: WindowedData,
    val: WindowedData | None = None,
    loss: LossKind | str | None = None,
    alpha: float | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    progress: ProgressCallback | None = None,
    checkpoint_path: str | os.PathLike | None = None,
) -> TrainingHistory:
    """Train ``model`` with Adam on a box prediction loss (paper A eq 20).

    Parameters
    ----------
    model : LSTMQuantilePredictor
        Model to train in place (its ``config`` gives lr, batch size, clipping and defaults).
    train : WindowedData
        Training windows, ideally standardized (:class:`~gridrecourse.learning.windows.
        WindowScalers`); x (N, M, F), y (N, τ, K).
    val : WindowedData, optional
        Validation windows; their loss is recorded each epoch (not used for stopping).
    loss : LossKind, optional
        Training loss; default ``model.config.loss``.
    alpha : float, optional
        Miscoverage level α ∈ (0, 1) of the box; default ``model.config.alpha``.
    epochs : int, optional
        Total number of epochs (resumed ones included); default ``model.config.epochs``.
    seed : int, optional
        Seed of shuffling and dropout; default ``model.config.seed``.
    progress : callable, optional
        Called with an :class:`EpochReport` after every epoch; returning ``True`` stops.
    checkpoint_path : path, optional
        If given, the weights, Adam state and history are saved there (atomically: temporary
        file + ``os.replace``) after every epoch, and a run finds and resumes from an existing
        checkpoint, skipping the finished epochs. The set-up must match (else
        :class:`CheckpointError`); ``epochs`` may grow to extend a finished run.

    Returns
    -------
    TrainingHistory
        Per-epoch losses of all finished epochs. The model holds the last epoch's weights and
        is left in eval mode.

    Raises
    ------
    PredictorInputError
        Data shapes do not fit the model, or empty data.
    CheckpointError
        Unreadable checkpoint or one written for a different set-up.
    """
    c = model.config
    kind = LossKind(loss if loss is not None else c.loss)
    a = check_alpha(alpha if alpha is not None else c.alpha)
    n_epochs = int(epochs if epochs is not None else c.epochs)
    run_seed = int(seed if seed is not None else c.seed)
    if n_epochs < 0:
        raise PredictorInputError(f"epochs must be ≥ 0, got {n_epochs}")
    x_train, y_train = _to_tensors(train, model, "training")
    val_tensors = _to_tensors(val, model, "validation") if val is not None else None

    optimizer = torch.optim.Adam(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    history = TrainingHistory(loss=kind, alpha=a)
    fingerprint = _fingerprint(model, kind, a, run_seed, len(train))
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    if path is not None and path.exists():
        state = _load_checkpoint(path, fingerprint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history.train_loss = [float(v) for v in state["train_loss"]]
        history.val_loss = [float(v) for v in state["val_loss"]]
        history.epoch_seconds = [float(v) for v in state["epoch_seconds"]]
        history.resumed_from_epoch = history.n_epochs

    n_train = x_train.shape[0]
    for epoch in range(history.n_epochs, n_epochs):
        started = time.perf_counter()
        model.train()
        total = 0.0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_epoch_seed(run_seed, epoch))  # drives dropout
            generator = torch.Generator().manual_seed(_epoch_seed(run_seed, epoch) + 1)
            order = torch.randperm(n_train, generator=generator)
            for i in range(0, n_train, c.batch_size):
                idx = order[i : i + c.batch_size]
                box = model(x_train[idx])
                batch_loss = box_loss(kind, box.lower, box.upper, y_train[idx], a)
                optimizer.zero_grad(set_to_none=True)
                batch_loss.backward()
                if c.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
                optimizer.step()
                total += float(batch_loss.detach()) * idx.shape[0]
        train_value = total / n_train
        val_value = _evaluate(model, *val_tensors, kind, a) if val_tensors is not None else math.nan
        seconds = time.perf_counter() - started
        history.train_loss.append(train_value)
        history.val_loss.append(val_value)
        history.epoch_seconds.append(seconds)
        if path is not None:
            save_checkpoint_atomic(
                {
                    "fingerprint": fingerprint,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "train_loss": history.train_loss,
                    "val_loss": history.val_loss,
                    "epoch_seconds": history.epoch_seconds,
                    "config": {
                        k: (v.value if isinstance(v, LossKind) else v) for k, v in asdict(c).items()
                    },
                },
                path,
            )
        if progress is not None:
            stop = progress(EpochReport(epoch + 1, n_epochs, train_value, val_value, seconds))
            if stop:
                history.stopped_early = epoch + 1 < n_epochs
                break
    model.eval()
    return history
