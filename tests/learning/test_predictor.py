"""LSTM quantile predictor: shapes, determinism, checkpoint/resume, and an end-to-end check
(train -> beat baselines -> conformalize -> coverage) on a synthetic hourly series."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gridrecourse.learning.losses import LossKind, pinball_loss  # noqa: E402
from gridrecourse.learning.predictor import (  # noqa: E402
    BoxTensors,
    CheckpointError,
    EpochReport,
    LSTMQuantilePredictor,
    PredictorConfig,
    PredictorInputError,
    TrainingHistory,
    train_predictor,
)
from gridrecourse.learning.windows import (  # noqa: E402
    WindowScalers,
    make_windows,
    split_by_time,
)
from gridrecourse.uncertainty.conformal import calibrate, empirical_coverage  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _hourly_series(n_hours: int, seed: int = 0):
    """Noisy daily sinusoids: a price-like and a load-like target with heteroscedastic noise.

    Features per hour: [price, load, sin(2πh/24), cos(2πh/24)]; targets: [price, load].
    """
    rng = np.random.default_rng(seed)
    hours = np.arange(n_hours)
    phase = 2 * np.pi * hours / 24
    load_sd = 0.05 + 0.05 * (1 + np.sin(phase))
    load = 1.0 + 0.5 * np.sin(phase) + load_sd * rng.standard_normal(n_hours)
    price = 30.0 + 10.0 * np.sin(phase + 1.0) + 2.0 * rng.standard_normal(n_hours)
    targets = np.column_stack([price, load])
    features = np.column_stack([price, load, np.sin(phase), np.cos(phase)])
    return features, targets


def _small_data(n_hours: int = 400, m: int = 12, tau: int = 3):
    features, targets = _hourly_series(n_hours)
    train, val, _test = split_by_time(make_windows(features, targets, m, tau))
    scalers = WindowScalers.fit(train)
    return scalers.transform(train), scalers.transform(val)


def _params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.state_dict().values()]


# ------------------------------------------------------------------------------ the model
def test_output_shapes_and_upper_not_below_lower():
    model = LSTMQuantilePredictor(n_features=5, horizon=4, n_targets=3)
    assert model.config.hidden_size == 64
    x = torch.randn(7, 24, 5) * 50.0  # large inputs: saturated LSTM, extreme head values
    box = model(x)
    assert isinstance(box, BoxTensors)
    assert box.lower.shape == box.upper.shape == (7, 4, 3)
    assert torch.all(box.upper >= box.lower)
    with torch.no_grad():
        model.head.bias[12:] = -40.0  # width logits very negative: softplus -> ~0, still >= 0
    box = model(x)
    assert torch.all(box.upper >= box.lower)
    numpy_box = model.predict(x.numpy())
    assert numpy_box.lower.shape == (7, 4, 3)
    assert np.all(numpy_box.upper >= numpy_box.lower)
    with pytest.raises(PredictorInputError, match="F=5"):
        model(torch.randn(7, 24, 4))


def test_two_layer_model_with_dropout_runs():
    config = PredictorConfig(hidden_size=16, num_layers=2, dropout=0.2, epochs=1)
    model = LSTMQuantilePredictor(4, 3, 2, config)
    assert model.lstm.num_layers == 2
    train, val = _small_data()
    history = train_predictor(model, train, val)
    assert history.n_epochs == 1


def test_config_validation():
    with pytest.raises(PredictorInputError, match="dropout"):
        PredictorConfig(dropout=1.0)
    with pytest.raises(PredictorInputError, match="hidden_size"):
        PredictorConfig(hidden_size=0)
    with pytest.raises(ValueError, match="alpha"):
        PredictorConfig(alpha=1.0)
    assert PredictorConfig(loss="gaussian_nll").loss is LossKind.GAUSSIAN_NLL


def test_initial_weights_depend_only_on_the_seed_and_leave_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = LSTMQuantilePredictor(4, 3, 2, PredictorConfig(hidden_size=8, seed=5))
    after = torch.rand(3)
    assert torch.equal(before, after)  # construction did not consume the global RNG
    torch.manual_seed(999)
    b = LSTMQuantilePredictor(4, 3, 2, PredictorConfig(hidden_size=8, seed=5))
    c = LSTMQuantilePredictor(4, 3, 2, PredictorConfig(hidden_size=8, seed=6))
    assert all(torch.equal(p, q) for p, q in zip(_params(a), _params(b), strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(_params(a), _params(c), strict=True))


# ------------------------------------------------------------------------------- training
def test_training_is_deterministic_and_reduces_the_loss():
    train, val = _small_data()
    config = PredictorConfig(hidden_size=16, epochs=5, lr=3e-3, batch_size=32, seed=3)
    runs = []
    for _ in range(2):
        torch.manual_seed(np.random.default_rng().integers(1 << 30))  # global state irrelevant
        model = LSTMQuantilePredictor(4, 3, 2, config)
        history = train_predictor(model, train, val)
        runs.append((model, history))
    (m1, h1), (m2, h2) = runs
    assert isinstance(h1, TrainingHistory)
    assert h1.train_loss == h2.train_loss
    assert h1.val_loss == h2.val_loss
    assert all(torch.equal(p, q) for p, q in zip(_params(m1), _params(m2), strict=True))
    assert h1.n_epochs == 5 and h1.resumed_from_epoch == 0 and not h1.stopped_early
    assert h1.train_loss[-1] < 0.5 * h1.train_loss[0]
    assert h1.val_loss[-1] < h1.val_loss[0]
    assert 1 <= h1.best_epoch <= 5
    assert h1.loss is LossKind.PINBALL and h1.alpha == 0.1
    assert not m1.training  # left in eval mode


def test_gaussian_nll_training_runs_and_improves():
    train, val = _small_data()
    model = LSTMQuantilePredictor(4, 3, 2, PredictorConfig(hidden_size=16, lr=3e-3))
    history = train_predictor(model, train, val, loss=LossKind.GAUSSIAN_NLL, epochs=4)
    assert history.loss is LossKind.GAUSSIAN_NLL
    assert history.val_loss[-1] < history.val_loss[0]


def test_progress_callback_and_early_stop():
    train, val = _small_data()
    reports: list[EpochReport] = []

    def progress(report: EpochReport) -> bool:
        reports.append(report)
        return report.epoch == 2

    model = LSTMQuantilePredictor(4, 3, 2, PredictorConfig(hidden_size=8))
    history = train_predictor(model, train, val, epochs=5, progress=progress)
    assert [r.epoch for r in reports] == [1, 2]
    assert all(r.n_epochs == 5 and r.seconds >= 0 for r in reports)
    assert reports[1].train_loss == history.train_loss[1]
    assert history.n_epochs == 2 and history.stopped_early


def test_data_that_does_not_fit_the_model_is_rejected():
    train, val = _small_data()
    model = LSTMQuantilePredictor(4, horizon=5, n_targets=2)
    with pytest.raises(PredictorInputError, match="tau=5"):
        train_predictor(model, train, val, epochs=1)
    with pytest.raises(PredictorInputError, match="empty"):
        train_predictor(LSTMQuantilePredictor(4, 3, 2), train.subset(slice(0, 0)), epochs=1)


# ------------------------------------------------------------------------ checkpoints (e)
class _Interrupt(Exception):
    pass


def test_resume_from_checkpoint_matches_uninterrupted_run(tmp_path: Path):
    """Interrupt after 2 of 5 epochs, resume: same history length and bit-identical weights.

    Exactness holds because each epoch reseeds shuffling/dropout from (seed, epoch) and the
    checkpoint carries the weights and the Adam state (same machine, one thread).
    """
    train, val = _small_data()
    config = PredictorConfig(hidden_size=16, dropout=0.1, epochs=5, lr=3e-3, seed=11)

    reference = LSTMQuantilePredictor(4, 3, 2, config)
    full = train_predictor(reference, train, val)

    ckpt = tmp_path / "sub" / "predictor.pt"

    def interrupt_after_two(report: EpochReport) -> None:
        if report.epoch == 2:
            raise _Interrupt

    first = LSTMQuantilePredictor(4, 3, 2, config)
    with pytest.raises(_Interrupt):
        train_predictor(first, train, val, checkpoint_path=ckpt, progress=interrupt_after_two)
    assert ckpt.exists()
    assert [p.name for p in ckpt.parent.iterdir()] == ["predictor.pt"]  # no temp files left

    # a fresh process would build a fresh model (here: even from another seed) and resume
    resumed_model = LSTMQuantilePredictor(
        4, 3, 2, PredictorConfig(**{**config.__dict__, "seed": 99})
    )
    seen: list[int] = []
    resumed = train_predictor(
        resumed_model,
        train,
        val,
        seed=11,
        checkpoint_path=ckpt,
        progress=lambda r: seen.append(r.epoch),
    )
    assert resumed.resumed_from_epoch == 2
    assert seen == [3, 4, 5]  # finished epochs are not redone
    assert resumed.n_epochs == full.n_epochs == 5
    assert resumed.train_loss == full.train_loss
    assert resumed.val_loss == full.val_loss
    assert all(
        torch.equal(p, q) for p, q in zip(_params(reference), _params(resumed_model), strict=True)
    )

    # a finished checkpoint resumes to nothing, or is extended when more epochs are asked for
    again = train_predictor(
        LSTMQuantilePredictor(4, 3, 2, config), train, val, checkpoint_path=ckpt
    )
    assert again.resumed_from_epoch == 5 and again.n_epochs == 5
    longer = train_predictor(
        LSTMQuantilePredictor(4, 3, 2, config), train, val, epochs=6, checkpoint_path=ckpt
    )
    assert longer.n_epochs == 6 and longer.train_loss[:5] == full.train_loss


def test_checkpoint_from_another_setup_is_refused(tmp_path: Path):
    train, val = _small_data()
    ckpt = tmp_path / "p.pt"
    config = PredictorConfig(hidden_size=8)
    train_predictor(
        LSTMQuantilePredictor(4, 3, 2, config), train, val, epochs=1, checkpoint_path=ckpt
    )
    with pytest.raises(CheckpointError, match=r"alpha: checkpoint 0\.1 vs now 0\.2"):
        train_predictor(
            LSTMQuantilePredictor(4, 3, 2, config),
            train,
            val,
            alpha=0.2,
            epochs=2,
            checkpoint_path=ckpt,
        )
    with pytest.raises(CheckpointError, match="hidden_size"):
        train_predictor(
            LSTMQuantilePredictor(4, 3, 2, PredictorConfig(hidden_size=16)),
            train,
            val,
            epochs=2,
            checkpoint_path=ckpt,
        )
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        train_predictor(
            LSTMQuantilePredictor(4, 3, 2, config), train, val, epochs=2, checkpoint_path=ckpt
        )


# ------------------------------------------------------------------------- end to end (d)
@pytest.mark.parametrize("alpha", [0.1, 0.3])
def test_lstm_beats_baselines_and_conformal_boxes_cover(alpha):
    """Train on ~1500 hours (M=24, τ=4), calibrate, test.

    Calibration and test blocks are long (≈7000 windows each): consecutive windows share
    τ−1 target hours, so their scores are strongly correlated and a 300-window test block
    would give a coverage standard deviation of ≈0.025 — too noisy for a 0.02 tolerance.
    Calibration is done in standardized units so price ($/MWh) does not dominate the max
    score over load (p.u.).
    """
    started = time.perf_counter()
    m, tau = 24, 4
    features, targets = _hourly_series(16_000, seed=0)
    train, cal, test = split_by_time(make_windows(features, targets, m, tau), (0.1, 0.45, 0.45))
    assert 1400 <= len(train) <= 1700
    scalers = WindowScalers.fit(train)
    train_z, cal_z, test_z = (scalers.transform(d) for d in (train, cal, test))

    config = PredictorConfig(hidden_size=32, epochs=20, batch_size=32, lr=3e-3, seed=0)
    model = LSTMQuantilePredictor(4, tau, 2, config)
    history = train_predictor(model, train_z, cal_z, alpha=alpha)
    assert history.val_loss[-1] < history.val_loss[0]

    box = model.predict(test_z.x)
    y = torch.as_tensor(test_z.y)
    lstm = float(pinball_loss(torch.as_tensor(box.lower), torch.as_tensor(box.upper), y, alpha))
    # mean/climatology baseline: the best constant box, train-set quantiles per output
    q_lo = np.quantile(train_z.y, alpha / 2, axis=0)
    q_hi = np.quantile(train_z.y, 1 - alpha / 2, axis=0)
    const = float(
        pinball_loss(
            torch.as_tensor(np.broadcast_to(q_lo, y.shape).copy()),
            torch.as_tensor(np.broadcast_to(q_hi, y.shape).copy()),
            y,
            alpha,
        )
    )
    # persistence baseline: last observed value of each target for all τ hours
    last = torch.as_tensor(scalers.y.transform(test.x[:, -1, :2]))[:, None, :].expand_as(y)
    persistence = float(pinball_loss(last, last, y, alpha))
    assert lstm < 0.6 * const
    assert lstm < 0.6 * persistence

    base = model.predict(cal_z.x)
    calibration = calibrate(base.lower, base.upper, cal_z.y, alpha)
    raw_coverage = empirical_coverage(box.lower, box.upper, test_z.y)
    lower, upper = calibration.apply(box.lower, box.upper)
    coverage = empirical_coverage(lower, upper, test_z.y)
    # back in physical units the boxes are the same events (monotone per-target map)
    assert coverage == empirical_coverage(
        scalers.y.inverse(lower), scalers.y.inverse(upper), test.y
    )
    assert raw_coverage < 1 - alpha  # joint coverage of per-output quantiles is too low
    assert 1 - alpha - 0.02 <= coverage <= 1 - alpha + 0.05
    assert time.perf_counter() - started < 60
