"""Paper A's two ways to size batteries from predicted boxes: ETO and end-to-end (METHODS §5).

Both methods use the same LSTM box predictor (:class:`~gridrecourse.learning.predictor.
LSTMQuantilePredictor`), the same split conformal calibration (eqs 21–23) and the same
storage-expansion LP (eq 19, :class:`~gridrecourse.problems.storage_expansion.
StorageExpansionProblem`); they differ only in the training loss.

* **ETO** (estimate-then-optimize, paper A §IV-B): ``epochs`` epochs on the prediction loss
  ``L_pred`` alone (eq 20; pinball by default, the paper's Gaussian NLL as an option).
* **E2E** (paper A §III, eq 25): the first ``warmup_epochs`` epochs are exactly ETO's first
  epochs (same seed, same loss — bit-identical weights), then ``epochs − warmup_epochs``
  epochs on ``L = λ L_pred + (1 − λ) L_task / task_scale``, ``L_task`` = mean optimal value
  of eq 19 at the *calibrated* box, differentiated by :class:`~gridrecourse.learning.lp_layer.
  StorageExpansionLayer` (envelope theorem: exact LP sensitivities, eq 24). ETO is λ = 1.

Conformal calibration inside the loop (:class:`InLoopCalibration`). Two variants:

* ``BATCH_SPLIT`` (default, **our choice**) — conformal training in the style of paper A's
  reference [11] (Yeh et al. 2024): every mini-batch is split in halves; q̂ is the conformal
  quantile (rank ⌈(m+1)(1−α)⌉, eq 22 scores) of the first half and is **differentiated** (the
  gradient reaches the window that holds the order statistic); ``L_task`` is the mean LP value
  of the second half at ``[f_lo − q̂, f_hi + q̂]``. Lowering ``f_hi`` raises q̂ too, so the
  network cannot "win" by shifting its upper bounds down and letting the calibration widen the
  box back. The calibration split is never seen in training, so the final calibration keeps
  its split-conformal guarantee.
* ``EPOCH_CONSTANT`` — the procedure the paper describes (and the brief suggested): q̂
  recomputed on the calibration split at the start of every E2E epoch and **held constant**
  for the gradients, which then flow through ``f_lo``, ``f_hi`` only; the calibration labels
  reach training through that scalar.

Why ``BATCH_SPLIT`` is the default: with a constant q̂ the network lowers its upper bounds, q̂
grows the next epoch to restore coverage, and the boxes drift wider; ``EPOCH_CONSTANT`` works
(and keeps the prediction MSE lower) only when the task weight is small. Measured on ieee13 and
ieee123: ``benchmarks/results/DESIGN_MEASUREMENTS.md``.

Loss scale: ``task_scale`` (EUR per unit of L_pred) makes the two terms of eq 25 comparable.
Default: ``L_task,0 / L_pred,0`` measured on the training windows with the warm-started model
(LP at the box conformalized on the training windows), i.e. each term is normalized by its
value when the E2E epochs start and λ is a genuine relative weight.

Units. The LSTM works on standardized targets (training-window mean/std per series); the
conformal score, q̂ and ``prediction_mse`` are in these standardized (dimensionless) units. The
box is mapped back to physical units (price EUR/MWh, loads kW) before the LP, so optimal values,
``task_loss`` and ``realized_cost`` are in EUR (the bundled prices are German day-ahead EUR/MWh;
the LP reads them as "currency/MWh").

One capacity decision from many test windows (applied identically to both methods): the LP is
solved at the calibrated box of **every** test window (``task_loss`` = mean optimal value); the
capacity decision is the **window-averaged** capacity ``x̄ = mean_w x*_w`` (kWh per candidate
bus), and ``realized_cost`` = mean over test windows of ``problem.realized_cost(x̄, true price,
true loads)`` (installation for the horizon + best dispatch of x̄ against what happened).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from gridrecourse.errors import GridRecourseError
from gridrecourse.learning.feeder_data import FeederDataset, Split
from gridrecourse.learning.losses import LossKind, box_loss
from gridrecourse.learning.lp_layer import StorageExpansionLayer
from gridrecourse.learning.predictor import (
    CheckpointError,
    EpochReport,
    LSTMQuantilePredictor,
    PredictorConfig,
    save_checkpoint_atomic,
    train_predictor,
)
from gridrecourse.uncertainty.conformal import (
    Box,
    ConformalCalibration,
    calibrate,
    check_alpha,
    conformal_rank,
    conformity_scores,
)

if TYPE_CHECKING:
    from gridrecourse.execution import Executor
    from gridrecourse.problems.storage_expansion import StorageExpansionProblem

__all__ = [
    "E2E_CHECKPOINT",
    "PRED_CHECKPOINT",
    "CheckpointError",
    "EndToEndConfig",
    "EndToEndError",
    "EpochRecord",
    "InLoopCalibration",
    "Method",
    "MethodMetrics",
    "MethodRun",
    "Phase",
    "TrainingLog",
    "calibrate_model",
    "calibrated_box",
    "check_calibration_size",
    "evaluate_method",
    "initial_task_scale",
    "run_method",
    "substation_box",
    "train_end_to_end",
]

#: Checkpoint of the L_pred-only epochs (ETO, and E2E's warm-up) inside ``checkpoint_dir``.
PRED_CHECKPOINT = "pred.pt"
#: Checkpoint of the E2E epochs inside ``checkpoint_dir``.
E2E_CHECKPOINT = "e2e.pt"
_E2E_FORMAT = 1


class EndToEndError(GridRecourseError, ValueError):
    """Settings or data do not fit the ETO / end-to-end methods."""


class Method(str, Enum):
    """Training method: estimate-then-optimize or end-to-end (paper A Table I)."""

    ETO = "eto"
    E2E = "e2e"


class Phase(str, Enum):
    """Kind of epoch: prediction loss only, or the combined loss of eq 25."""

    PRED = "pred"
    E2E = "e2e"


class InLoopCalibration(str, Enum):
    """How q̂ is obtained inside the E2E epochs (see the module docstring).

    ``BATCH_SPLIT`` (default): every mini-batch is split in halves; q̂ is the conformal quantile
    of the first half's scores, **differentiated** (gradient through the order statistic), and
    the task loss is taken on the second half (Yeh et al. 2024, paper A's [11]); the
    calibration split is never seen during training. ``EPOCH_CONSTANT`` (the paper's
    procedure): q̂ recomputed on the calibration split at the start of every epoch and held
    constant for the gradients; its boxes drift wider when the task term is strong.
    """

    BATCH_SPLIT = "batch_split"
    EPOCH_CONSTANT = "epoch_constant"


@dataclass(frozen=True)
class EndToEndConfig:
    """Settings of :func:`run_method`.

    Attributes
    ----------
    method : Method
        ``ETO`` or ``E2E``.
    alpha : float
        Miscoverage level α ∈ (0, 1) of the training quantiles (α/2, 1 − α/2) and of the
        conformal calibration (target joint coverage 1 − α).
    lam : float
        λ ∈ [0, 1], weight of ``L_pred`` in eq 25 (E2E only; ETO is λ = 1).
    epochs : int
        Total epochs (ETO: all on L_pred; E2E: warm-up + E2E epochs).
    warmup_epochs : int
        E2E only: leading epochs on L_pred only (identical to ETO's first epochs); ≤ epochs.
    loss : LossKind
        L_pred (eq 20): pinball (default) or Gaussian NLL.
    hidden_size, num_layers, dropout, lr, weight_decay, batch_size, grad_clip
        LSTM and Adam settings (see :class:`~gridrecourse.learning.predictor.PredictorConfig`).
    e2e_lr : float or None
        Adam learning rate of the E2E epochs (default ``lr``).
    seed : int
        Seed of weights, shuffling and dropout.
    task_scale : float or None
        EUR per unit of L_pred dividing L_task in eq 25 (``None``: ``L_task,0 / L_pred,0`` at the
        start of the E2E epochs, see the module docstring).
    in_loop_calibration : InLoopCalibration
        How q̂ enters the E2E epochs (default ``BATCH_SPLIT``; ``EPOCH_CONSTANT`` is the
        paper's procedure).
    """

    method: Method = Method.E2E
    alpha: float = 0.1
    lam: float = 0.8
    epochs: int = 30
    warmup_epochs: int = 20
    loss: LossKind = LossKind.PINBALL
    hidden_size: int = 32
    num_layers: int = 1
    dropout: float = 0.0
    lr: float = 3e-3
    e2e_lr: float | None = None
    weight_decay: float = 0.0
    batch_size: int = 32
    grad_clip: float | None = 1.0
    seed: int = 0
    task_scale: float | None = None
    in_loop_calibration: InLoopCalibration = InLoopCalibration.BATCH_SPLIT

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", Method(self.method))
        object.__setattr__(self, "in_loop_calibration", InLoopCalibration(self.in_loop_calibration))
        object.__setattr__(self, "loss", LossKind(self.loss))
        check_alpha(self.alpha)
        if not (isinstance(self.lam, (int, float)) and 0.0 <= float(self.lam) <= 1.0):
            raise EndToEndError(
                f"lambda (weight of L_pred, eq 25) must be in [0, 1], got {self.lam}"
            )
        if int(self.epochs) < 1:
            raise EndToEndError(f"epochs must be ≥ 1, got {self.epochs}")
        if self.method is Method.E2E and not 0 <= int(self.warmup_epochs) <= int(self.epochs):
            raise EndToEndError(
                f"warmup_epochs must be in [0, epochs={self.epochs}], got {self.warmup_epochs}"
            )
        if self.task_scale is not None and not (
            math.isfinite(self.task_scale) and self.task_scale > 0
        ):
            raise EndToEndError(
                f"task_scale must be a positive number (EUR), got {self.task_scale}"
            )
        if self.e2e_lr is not None and not self.e2e_lr > 0:
            raise EndToEndError(f"e2e_lr must be > 0, got {self.e2e_lr}")

    @property
    def effective_lam(self) -> float:
        """λ actually used: 1 for ETO."""
        return 1.0 if self.method is Method.ETO else float(self.lam)

    @property
    def pred_epochs(self) -> int:
        """Epochs on L_pred only."""
        return int(self.epochs) if self.method is Method.ETO else int(self.warmup_epochs)

    @property
    def e2e_epochs(self) -> int:
        """Epochs on the combined loss (0 for ETO)."""
        return int(self.epochs) - self.pred_epochs

    def predictor_config(self) -> PredictorConfig:
        """The :class:`PredictorConfig` of the LSTM and of the L_pred epochs."""
        return PredictorConfig(
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout=self.dropout,
            lr=self.lr,
            weight_decay=self.weight_decay,
            epochs=max(self.pred_epochs, 1),
            batch_size=self.batch_size,
            seed=self.seed,
            alpha=self.alpha,
            loss=self.loss,
            grad_clip=self.grad_clip,
        )


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch (what the progress callback receives).

    Attributes
    ----------
    epoch : int
        1-based epoch number over the whole run (warm-up included).
    n_epochs : int
        Total epochs of the run.
    phase : Phase
        ``pred`` (L_pred only) or ``e2e`` (eq 25).
    train_pred_loss : float
        Mean L_pred over the training batches (standardized units).
    val_pred_loss : float
        L_pred on the calibration windows (eval mode).
    train_task_loss : float
        Mean LP optimal value over the training windows at the calibrated box (EUR per window;
        NaN in ``pred`` epochs, where no LP is solved).
    q_hat : float
        q̂ used in this epoch (standardized units; NaN in ``pred`` epochs).
    seconds : float
        Wall time (s).
    """

    epoch: int
    n_epochs: int
    phase: Phase
    train_pred_loss: float
    val_pred_loss: float
    train_task_loss: float
    q_hat: float
    seconds: float


#: Progress hook: called after every epoch; returning ``True`` stops training early.
ProgressCallback = Callable[[EpochRecord], "bool | None"]


@dataclass
class TrainingLog:
    """Per-epoch records of a run (resumed epochs included) and the task scale used.

    ``task_scale`` is EUR per unit of L_pred (NaN when no E2E epoch ran).
    """

    records: list[EpochRecord] = field(default_factory=list)
    task_scale: float = math.nan
    resumed_from_epoch: int = 0
    stopped_early: bool = False

    def column(self, name: str) -> np.ndarray:
        """One field of every record as an array."""
        return np.array([getattr(r, name) for r in self.records], dtype=float)


@dataclass(frozen=True)
class MethodMetrics:
    """Test-split metrics of one trained method (paper A Tables I–II columns and more).

    Attributes
    ----------
    method : str
        ``eto`` or ``e2e``.
    lam, alpha : float
        λ used (1 for ETO) and miscoverage level.
    seed : int
    task_loss : float
        Mean optimal value of eq 19 over test windows at the calibrated box (EUR per window of
        τ hours): paper A's "task loss".
    prediction_mse : float
        Mean squared error of the box midpoint vs the truth over all test outputs, in
        **standardized** units (dimensionless; price and loads weigh equally): paper A's
        "prediction loss" (its §IV-B1 uses the midpoint). Uniform widening by q̂ keeps the
        midpoint, so this is also the calibrated box's midpoint error.
    total_loss : float
        ``task_loss + prediction_mse`` — the sum paper A's Tables I–II report (mixed units,
        as in the paper).
    test_coverage : float
        Fraction of test windows whose calibrated box covers every output (joint coverage).
    realized_cost : float
        Mean over test windows of ``problem.realized_cost(x̄, true price, true loads)`` (EUR per
        window; x̄ = window-averaged capacity decision).
    capacity_kwh_total : float
        Σ_j x̄_j (kWh).
    wall_seconds : float
        Training + evaluation wall time (s).
    q_hat : float
        Final conformal widening (standardized units).
    price_mse : float
        Midpoint MSE of the price ((EUR/MWh)²).
    load_mse : float
        Midpoint MSE of the bus loads (kW²).
    oracle_cost : float
        Mean optimal value with perfect information (LP at the true prices and loads; EUR per
        window): a lower reference for ``realized_cost``.
    n_train, n_calibration, n_test : int
        Windows per split.
    """

    method: str
    lam: float
    alpha: float
    seed: int
    task_loss: float
    prediction_mse: float
    total_loss: float
    test_coverage: float
    realized_cost: float
    capacity_kwh_total: float
    wall_seconds: float
    q_hat: float
    price_mse: float
    load_mse: float
    oracle_cost: float
    n_train: int
    n_calibration: int
    n_test: int


@dataclass(eq=False)
class MethodRun:
    """Everything a trained method produced.

    Attributes
    ----------
    config : EndToEndConfig
    metrics : MethodMetrics
    model : LSTMQuantilePredictor
        Trained weights (eval mode).
    calibration : ConformalCalibration
        Final q̂ at ``config.alpha`` (standardized units).
    log : TrainingLog
    capacity_kwh : dict of str to float
        The decision x̄ per candidate bus (kWh).
    window_capacity_kwh : ndarray, shape (n_test, n_candidates)
        x*_w of every test window.
    test_box : Box
        Calibrated test boxes in physical units, (n_test, τ, K): price EUR/MWh, loads kW.
    test_values : ndarray, shape (n_test,)
        Optimal values at the calibrated boxes (EUR).
    realized_costs : ndarray, shape (n_test,)
        Realized cost of x̄ per test window (EUR).
    oracle_costs : ndarray, shape (n_test,)
    """

    config: EndToEndConfig
    metrics: MethodMetrics
    model: LSTMQuantilePredictor
    calibration: ConformalCalibration
    log: TrainingLog
    capacity_kwh: dict[str, float]
    window_capacity_kwh: np.ndarray
    test_box: Box
    test_values: np.ndarray
    realized_costs: np.ndarray
    oracle_costs: np.ndarray


# ------------------------------------------------------------------------------- helpers
def _check_problem(problem: StorageExpansionProblem, dataset: FeederDataset) -> None:
    if tuple(problem.load_sites) != tuple(dataset.sites):
        raise EndToEndError(
            "the data set's load sites differ from the problem's load_sites (the order of the "
            f"load axis): {list(dataset.sites)[:6]}… vs {list(problem.load_sites)[:6]}…; build "
            "the data set from problem.load_sites"
        )
    if int(problem.n_hours) != dataset.horizon:
        raise EndToEndError(
            f"the prediction horizon tau = {dataset.horizon} h differs from the LP horizon "
            f"problem.n_hours = {problem.n_hours}; use the same tau for both"
        )


def check_calibration_size(n_calibration: int, alpha: float) -> None:
    """Fail early (before training) when the calibration split is too small for α.

    Raises
    ------
    CoverageLevelError
        α ∉ (0, 1).
    CalibrationError
        ``⌈(M+1)(1−α)⌉ > M``: the message gives M, α and the minimum M.
    """
    conformal_rank(n_calibration, alpha)


@torch.no_grad()
def initial_task_scale(
    model: LSTMQuantilePredictor,
    problem: StorageExpansionProblem,
    dataset: FeederDataset,
    config: EndToEndConfig,
    executor: Executor | None = None,
) -> float:
    """``L_task,0 / L_pred,0`` on the training windows (EUR per unit of L_pred).

    ``L_pred,0``: L_pred of the current (warm-started) model on all training windows;
    ``L_task,0``: mean LP optimal value at the boxes conformalized with q̂ computed on the
    training windows' own scores (rank ⌈(n+1)(1−α)⌉, capped at n). One LP per training window.
    """
    train = dataset.standardized(Split.TRAIN)
    raw = _predict_std(model, train.x)
    l_pred = float(
        box_loss(
            config.loss,
            torch.as_tensor(raw.lower),
            torch.as_tensor(raw.upper),
            torch.as_tensor(train.y),
            config.alpha,
        )
    )
    q = float(
        _batch_quantile(
            torch.as_tensor(raw.lower),
            torch.as_tensor(raw.upper),
            torch.as_tensor(train.y),
            config.alpha,
        )
    )
    scaler = dataset.scalers.y
    phys = Box(scaler.inverse(raw.lower - q), scaler.inverse(raw.upper + q))
    sols = _solve_many(problem, executor, *_lp_inputs(phys), dataset.pv_kw(Split.TRAIN))
    l_task = float(np.mean([abs(s.objective) for s in sols]))
    if not (l_pred > 0 and l_task > 0 and math.isfinite(l_task / l_pred)):
        return 1.0
    return l_task / l_pred


def _target_scaling(dataset: FeederDataset) -> tuple[torch.Tensor, torch.Tensor]:
    s = dataset.scalers.y
    return (
        torch.as_tensor(s.mean, dtype=torch.float64),
        torch.as_tensor(s.std, dtype=torch.float64),
    )


@torch.no_grad()
def _predict_std(model: LSTMQuantilePredictor, x: np.ndarray) -> Box:
    return model.predict(x)


def calibrate_model(
    model: LSTMQuantilePredictor, dataset: FeederDataset, alpha: float
) -> ConformalCalibration:
    """Split conformal calibration (eqs 21–23) of ``model`` on the calibration windows.

    Scores are computed in standardized units (price and loads on one scale).
    """
    cal = dataset.standardized(Split.CALIBRATION)
    box = _predict_std(model, cal.x)
    return calibrate(box.lower, box.upper, cal.y, alpha)


def calibrated_box(
    model: LSTMQuantilePredictor,
    dataset: FeederDataset,
    calibration: ConformalCalibration,
    split: Split | str = Split.TEST,
) -> tuple[Box, Box]:
    """Calibrated boxes of a split: (standardized, physical), each (n, τ, K).

    Physical units: column 0 price (EUR/MWh), columns 1… bus loads (kW) in site order.
    """
    data = dataset.standardized(split)
    raw = _predict_std(model, data.x)
    std_box = calibration.apply(raw.lower, raw.upper)
    scaler = dataset.scalers.y
    phys = Box(scaler.inverse(std_box.lower), scaler.inverse(std_box.upper))
    return std_box, phys


def _lp_inputs(phys: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(price_upper, price_lower, load_upper) for the LP; a crossed price box is closed."""
    price_upper = phys.upper[:, :, 0]
    price_lower = np.minimum(phys.lower[:, :, 0], price_upper)
    return price_upper, price_lower, phys.upper[:, :, 1:]


def _realized_task(problem: StorageExpansionProblem, item: tuple) -> float:
    """Executor task: realized cost of a fixed capacity on one window's true data."""
    capacity, price, load, pv = item
    return float(problem.realized_cost(capacity, price, load, pv))


def _batch_quantile(
    lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor, alpha: float
) -> torch.Tensor:
    """Differentiable conformal quantile of a calibration half-batch (eq 22, rank ⌈(m+1)(1−α)⌉).

    ``s_j = max_i max(lower_j,i − y_j,i, y_j,i − upper_j,i)``; the rank is capped at m (the
    largest score) when m is too small for α. Gradients reach the window holding the quantile
    (a.e. differentiable, as in Yeh et al. 2024).
    """
    m = lower.shape[0]
    scores = torch.amax(torch.maximum(lower - y, y - upper).reshape(m, -1), dim=1)
    k = min(math.ceil((m + 1) * (1.0 - alpha) - 1e-9), m)
    return torch.sort(scores).values[max(k, 1) - 1]


def _epoch_seed(seed: int, epoch: int) -> int:
    """Independent seed of epoch ``epoch`` (0-based) of a run seeded with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


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
            "use another checkpoint_dir"
        )
    return state


def _fingerprint(config: EndToEndConfig, dataset: FeederDataset) -> dict:
    c = asdict(config)
    c = {k: (v.value if isinstance(v, Enum) else v) for k, v in c.items()}
    c.pop("epochs")
    return {
        "format": _E2E_FORMAT,
        **c,
        "n_train": len(dataset.train),
        "n_calibration": len(dataset.calibration),
        "horizon": dataset.horizon,
        "history": dataset.history,
        "n_targets": dataset.n_targets,
    }


# ------------------------------------------------------------------------------- training
def train_end_to_end(
    model: LSTMQuantilePredictor,
    problem: StorageExpansionProblem,
    dataset: FeederDataset,
    config: EndToEndConfig,
    log: TrainingLog,
    executor: Executor | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
) -> TrainingLog:
    """The E2E epochs: ``λ L_pred + (1 − λ) L_task / task_scale`` (eq 25).

    q̂ enters as set by ``config.in_loop_calibration``; ``task_scale`` is
    ``config.task_scale`` or :func:`initial_task_scale` of the warm-started model (stored in
    ``log.task_scale`` and in the checkpoint).

    Continues ``model`` (after the warm-up) in place for ``config.e2e_epochs`` epochs; appends
    to ``log`` (which must hold the warm-up epochs). With ``checkpoint_path``, weights, Adam
    state and the E2E records are saved atomically after every epoch and an existing
    checkpoint of the same set-up is resumed. Shuffling and dropout of epoch e are drawn from
    ``(seed, e)`` as in :func:`~gridrecourse.learning.predictor.train_predictor`.

    Raises
    ------
    CheckpointError
        A checkpoint of another set-up.
    """
    lam = config.effective_lam
    alpha = config.alpha
    layer = StorageExpansionLayer(problem, executor=executor)
    train = dataset.standardized(Split.TRAIN)
    cal = dataset.standardized(Split.CALIBRATION)
    x_train = torch.as_tensor(train.x, dtype=torch.float32)
    y_train = torch.as_tensor(train.y, dtype=torch.float32)
    x_cal = torch.as_tensor(cal.x, dtype=torch.float32)
    y_cal = torch.as_tensor(cal.y, dtype=torch.float32)
    pv_train = dataset.pv_kw(Split.TRAIN)
    mean_y, std_y = _target_scaling(dataset)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.e2e_lr or config.lr, weight_decay=config.weight_decay
    )
    n_pred = config.pred_epochs
    n_total = int(config.epochs)
    fingerprint = _fingerprint(config, dataset)
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    done_e2e: list[EpochRecord] = []
    if path is not None and path.exists():
        state = _load_checkpoint(path, fingerprint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        done_e2e = [
            EpochRecord(**{**r, "phase": Phase(r["phase"]), "n_epochs": n_total})
            for r in state["records"]
        ]
        log.task_scale = float(state["task_scale"])
        log.resumed_from_epoch = max(log.resumed_from_epoch, n_pred + len(done_e2e))
    elif config.task_scale is not None:
        log.task_scale = float(config.task_scale)
    elif lam < 1.0 and n_pred + len(done_e2e) < n_total:
        log.task_scale = initial_task_scale(model, problem, dataset, config, executor)
    else:
        log.task_scale = 1.0
    task_scale = log.task_scale
    log.records.extend(done_e2e)
    n = x_train.shape[0]
    for epoch in range(n_pred + len(done_e2e), n_total):
        started = time.perf_counter()
        epoch_q = (
            calibrate_model(model, dataset, alpha).q_hat
            if config.in_loop_calibration is InLoopCalibration.EPOCH_CONSTANT
            else math.nan
        )
        model.train()
        sum_pred = sum_task = sum_q = 0.0
        n_task = n_batches = 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_epoch_seed(config.seed, epoch))
            generator = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch) + 1)
            order = torch.randperm(n, generator=generator)
            for i in range(0, n, config.batch_size):
                idx = order[i : i + config.batch_size]
                box = model(x_train[idx])
                l_pred = box_loss(config.loss, box.lower, box.upper, y_train[idx], alpha)
                if config.in_loop_calibration is InLoopCalibration.EPOCH_CONSTANT:
                    q = torch.tensor(epoch_q, dtype=torch.float64)
                    task = slice(None)
                elif idx.shape[0] >= 2:
                    n_cal = idx.shape[0] // 2
                    q = _batch_quantile(
                        box.lower[:n_cal], box.upper[:n_cal], y_train[idx[:n_cal]], alpha
                    ).double()
                    task = slice(n_cal, None)
                else:  # a last batch of one window: no split possible, L_pred only
                    q, task = None, None
                loss = lam * l_pred
                if q is not None and lam < 1.0:
                    upper = (box.upper[task].double() + q) * std_y + mean_y
                    lower = (box.lower[task].double() - q) * std_y + mean_y
                    price_upper = upper[:, :, 0]
                    price_lower = torch.minimum(lower[:, :, 0], price_upper)
                    pv = None if pv_train is None else pv_train[idx[task].numpy()]
                    values = layer(price_upper, price_lower, upper[:, :, 1:], pv)
                    loss = loss + (1.0 - lam) * values.mean() / task_scale
                    sum_task += float(values.detach().sum())
                    sum_q += float(q.detach())
                    n_task += int(values.shape[0])
                    n_batches += 1
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                sum_pred += float(l_pred.detach()) * idx.shape[0]
        model.eval()
        with torch.no_grad():
            vbox = model(x_cal)
            val = float(box_loss(config.loss, vbox.lower, vbox.upper, y_cal, alpha))
        record = EpochRecord(
            epoch=epoch + 1,
            n_epochs=n_total,
            phase=Phase.E2E,
            train_pred_loss=sum_pred / n,
            val_pred_loss=val,
            train_task_loss=sum_task / n_task if n_task else math.nan,
            q_hat=sum_q / n_batches if n_batches else math.nan,
            seconds=time.perf_counter() - started,
        )
        log.records.append(record)
        done_e2e.append(record)
        if path is not None:
            save_checkpoint_atomic(
                {
                    "fingerprint": fingerprint,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "records": [{**asdict(r), "phase": r.phase.value} for r in done_e2e],
                    "task_scale": task_scale,
                },
                path,
            )
        if progress is not None and progress(record):
            log.stopped_early = epoch + 1 < n_total
            break
    model.eval()
    return log


# ------------------------------------------------------------------------------- evaluation
def _solve_many(
    problem: StorageExpansionProblem,
    executor: Executor | None,
    price_upper: np.ndarray,
    price_lower: np.ndarray,
    load_upper: np.ndarray,
    pv: np.ndarray | None,
) -> list:
    """Solve the LP at n boxes (NumPy (n, τ), (n, τ), (n, τ, N)) via the layer's batch solver."""
    layer = StorageExpansionLayer(problem, executor=executor)
    return list(
        layer.solve_batch(
            np.ascontiguousarray(price_upper),
            np.ascontiguousarray(price_lower),
            np.ascontiguousarray(load_upper),
            None if pv is None else np.ascontiguousarray(pv),
        )
    )


def evaluate_method(
    model: LSTMQuantilePredictor,
    problem: StorageExpansionProblem,
    dataset: FeederDataset,
    config: EndToEndConfig,
    executor: Executor | None = None,
    with_oracle: bool = True,
) -> tuple[MethodMetrics, dict[str, Any]]:
    """Calibrate at α, solve the LP at every test window's box, score the decision x̄.

    Returns
    -------
    metrics : MethodMetrics
        ``wall_seconds`` is the evaluation time only (:func:`run_method` adds training).
    extra : dict
        ``calibration``, ``test_box`` (physical), ``test_values``, ``window_capacity_kwh``,
        ``capacity_kwh``, ``realized_costs``, ``oracle_costs``.
    """
    t0 = time.perf_counter()
    _check_problem(problem, dataset)
    calibration = calibrate_model(model, dataset, config.alpha)
    test_std = dataset.standardized(Split.TEST)
    std_box, phys = calibrated_box(model, dataset, calibration, Split.TEST)
    coverage = float(np.mean(conformity_scores(std_box.lower, std_box.upper, test_std.y) <= 0))
    mid_std = 0.5 * (std_box.lower + std_box.upper)
    mid_phys = 0.5 * (phys.lower + phys.upper)
    y = dataset.test.y
    pv = dataset.pv_kw(Split.TEST)
    sols = _solve_many(problem, executor, *_lp_inputs(phys), pv)
    values = np.array([s.objective for s in sols])
    caps = np.stack([s.capacity_vector_kwh for s in sols])
    decision = caps.mean(axis=0)
    items = [
        (decision, y[i, :, 0], y[i, :, 1:], None if pv is None else pv[i]) for i in range(len(y))
    ]
    if executor is None:
        realized = np.array([_realized_task(problem, it) for it in items])
    else:
        realized = np.array(
            executor.map(_realized_task, items, state_factory=problem.factory), dtype=float
        )
    if with_oracle:
        oracle_sols = _solve_many(problem, executor, y[:, :, 0], y[:, :, 0], y[:, :, 1:], pv)
        oracle = np.array([s.objective for s in oracle_sols])
    else:
        oracle = np.full(len(y), np.nan)
    prediction_mse = float(np.mean((mid_std - test_std.y) ** 2))
    task_loss = float(values.mean())
    metrics = MethodMetrics(
        method=config.method.value,
        lam=config.effective_lam,
        alpha=config.alpha,
        seed=config.seed,
        task_loss=task_loss,
        prediction_mse=prediction_mse,
        total_loss=task_loss + prediction_mse,
        test_coverage=coverage,
        realized_cost=float(realized.mean()),
        capacity_kwh_total=float(decision.sum()),
        wall_seconds=time.perf_counter() - t0,
        q_hat=float(calibration.q_hat),
        price_mse=float(np.mean((mid_phys[:, :, 0] - y[:, :, 0]) ** 2)),
        load_mse=float(np.mean((mid_phys[:, :, 1:] - y[:, :, 1:]) ** 2)),
        oracle_cost=float(oracle.mean()),
        n_train=len(dataset.train),
        n_calibration=len(dataset.calibration),
        n_test=len(dataset.test),
    )
    extra = {
        "calibration": calibration,
        "test_box": phys,
        "test_values": values,
        "window_capacity_kwh": caps,
        "capacity_kwh": dict(zip(problem.candidate_buses, decision.tolist(), strict=True)),
        "realized_costs": realized,
        "oracle_costs": oracle,
    }
    return metrics, extra


# ------------------------------------------------------------------------------- driver
def run_method(
    problem: StorageExpansionProblem,
    dataset: FeederDataset,
    config: EndToEndConfig | None = None,
    executor: Executor | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    with_oracle: bool = True,
) -> MethodRun:
    """Train ETO or E2E, calibrate, decide and score on the test windows (module docstring).

    Parameters
    ----------
    problem : StorageExpansionProblem
        Its ``load_sites`` must be the data set's sites and ``n_hours`` its horizon τ.
    dataset : FeederDataset
        From :func:`gridrecourse.learning.feeder_data.build_feeder_dataset`.
    config : EndToEndConfig, optional
    executor : Executor, optional
        Solves the LPs of a batch / of the test windows in parallel (per-worker problems).
    checkpoint_dir : path, optional
        Folder for ``pred.pt`` and ``e2e.pt``; an interrupted run resumes from them.
    progress : callable, optional
        Receives an :class:`EpochRecord` after each epoch; returning ``True`` stops training.
    with_oracle : bool
        Also solve the perfect-information LP of every test window (``oracle_cost``).

    Returns
    -------
    MethodRun

    Raises
    ------
    CoverageLevelError
        α ∉ (0, 1).
    CalibrationError
        Calibration split too small for α (checked before any training).
    EndToEndError
        Sites or horizon of the problem and data differ; bad settings.
    CheckpointError
        A checkpoint of another set-up in ``checkpoint_dir``.
    """
    config = config or EndToEndConfig()
    t0 = time.perf_counter()
    check_alpha(config.alpha)
    check_calibration_size(len(dataset.calibration), config.alpha)
    _check_problem(problem, dataset)
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)

    pc = config.predictor_config()
    model = LSTMQuantilePredictor(dataset.n_features, dataset.horizon, dataset.n_targets, pc)
    log = TrainingLog()
    n_total = int(config.epochs)
    stop = {"early": False}

    def on_pred_epoch(report: EpochReport) -> bool | None:
        record = EpochRecord(
            epoch=report.epoch,
            n_epochs=n_total,
            phase=Phase.PRED,
            train_pred_loss=report.train_loss,
            val_pred_loss=report.val_loss,
            train_task_loss=math.nan,
            q_hat=math.nan,
            seconds=report.seconds,
        )
        if progress is not None and progress(record):
            stop["early"] = True
            return True
        return None

    if config.pred_epochs > 0:
        history = train_predictor(
            model,
            dataset.standardized(Split.TRAIN),
            dataset.standardized(Split.CALIBRATION),
            loss=config.loss,
            alpha=config.alpha,
            epochs=config.pred_epochs,
            seed=config.seed,
            progress=on_pred_epoch,
            checkpoint_path=None if folder is None else folder / PRED_CHECKPOINT,
        )
        if history.n_epochs > config.pred_epochs:
            raise CheckpointError(
                f"checkpoint {folder / PRED_CHECKPOINT} holds {history.n_epochs} L_pred epochs "
                f"but this run asks for {config.pred_epochs} (a run of another method or "
                "warm-up length wrote it); use a separate checkpoint_dir per run"
            )
        log.records.extend(
            EpochRecord(
                epoch=i + 1,
                n_epochs=n_total,
                phase=Phase.PRED,
                train_pred_loss=tl,
                val_pred_loss=vl,
                train_task_loss=math.nan,
                q_hat=math.nan,
                seconds=s,
            )
            for i, (tl, vl, s) in enumerate(
                zip(history.train_loss, history.val_loss, history.epoch_seconds, strict=True)
            )
        )
        log.resumed_from_epoch = history.resumed_from_epoch
        log.stopped_early = history.stopped_early or stop["early"]
    if config.e2e_epochs > 0 and not log.stopped_early:
        train_end_to_end(
            model,
            problem,
            dataset,
            config,
            log,
            executor=executor,
            checkpoint_path=None if folder is None else folder / E2E_CHECKPOINT,
            progress=progress,
        )
    metrics, extra = evaluate_method(model, problem, dataset, config, executor, with_oracle)
    metrics = MethodMetrics(**{**asdict(metrics), "wall_seconds": time.perf_counter() - t0})
    return MethodRun(
        config=config,
        metrics=metrics,
        model=model,
        calibration=extra["calibration"],
        log=log,
        capacity_kwh=extra["capacity_kwh"],
        window_capacity_kwh=extra["window_capacity_kwh"],
        test_box=extra["test_box"],
        test_values=extra["test_values"],
        realized_costs=extra["realized_costs"],
        oracle_costs=extra["oracle_costs"],
    )


def substation_box(box: Box, y: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Box implied for the substation demand Σ_s load_s (kW): ``[Σ lower, Σ upper]`` per hour.

    Parameters
    ----------
    box : Box
        Physical boxes (n, τ, K) with loads in columns 1….
    y : ndarray, shape (n, τ, K), optional
        Truth; its substation demand is returned too.

    Returns
    -------
    tuple of ndarray, shape (n, τ)
        ``(lower, upper)`` or ``(lower, upper, truth)`` in kW (lossless: Σ of bus loads).
    """
    out = [box.lower[:, :, 1:].sum(axis=2), box.upper[:, :, 1:].sum(axis=2)]
    if y is not None:
        out.append(np.asarray(y)[:, :, 1:].sum(axis=2))
    return tuple(out)
