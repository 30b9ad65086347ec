"""Learning components of paper A: windowing, box losses and the LSTM quantile predictor.

:mod:`~gridrecourse.learning.windows` is numpy only and imported eagerly. The torch parts
(:mod:`~gridrecourse.learning.losses`, :mod:`~gridrecourse.learning.predictor`) need the ``ml``
extra (``pip install gridrecourse[ml]``, which pins ``torch==2.13.0``) and are imported lazily
on first attribute access, so ``import gridrecourse.learning`` works without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from gridrecourse.learning.windows import (
    Standardizer,
    TimeSplit,
    WindowedData,
    WindowError,
    WindowScalers,
    make_windows,
    split_by_time,
)

_LAZY = {
    "LossKind": "losses",
    "pinball_loss": "losses",
    "gaussian_box_nll": "losses",
    "midpoint_mse": "losses",
    "quantile_loss": "losses",
    "box_loss": "losses",
    "LSTMQuantilePredictor": "predictor",
    "PredictorConfig": "predictor",
    "TrainingHistory": "predictor",
    "EpochReport": "predictor",
    "BoxTensors": "predictor",
    "CheckpointError": "predictor",
    "PredictorInputError": "predictor",
    "train_predictor": "predictor",
}

__all__ = [
    "Standardizer",
    "TimeSplit",
    "WindowError",
    "WindowScalers",
    "WindowedData",
    "make_windows",
    "split_by_time",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gridrecourse.learning' has no attribute {name!r}")
    return getattr(importlib.import_module(f"gridrecourse.learning.{module}"), name)
