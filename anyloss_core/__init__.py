"""anyloss_core: any confusion-matrix metric as a differentiable loss, on any Array API namespace.

The math of AnyLoss (Han, Moniz, Chawla, KDD 2024), written once against the
Python Array API standard.  It imports no deep-learning framework; the adapters
``anyloss_torch``, ``anyloss_jax`` and ``anyloss_keras`` make it a native loss.

Examples:
    >>> import numpy as np, anyloss_core as al
    >>> y, p = np.array([0, 1, 1, 0]), np.array([0.1, 0.8, 0.3, 0.4])
    >>> round(float(al.f1_loss(y, p)), 2)
    0.33
"""

from ._approximations import (
    APPROXIMATIONS,
    AnyLossApproximation,
    Approximation,
    DifferentiableApproximation,
    IdentityApproximation,
    SolCosineApproximation,
    get_approximation,
)
from ._config import LossConfigMixin
from ._confusion import check_scale, confusion, soft_confusion, soft_confusion_with_pullback
from ._losses import (
    accuracy_loss,
    anyloss,
    balanced_accuracy_loss,
    confusion_loss,
    f1_loss,
    fbeta_loss,
    gmean_loss,
    score,
    with_metric,
)
from ._metrics import METRICS, Confusion, get_metric, ratio, register_metric
from ._multiclass import AVERAGES, TASKS, SharpenedSoftmax, average_metric, class_confusion, soft_class_confusion
from ._namespace import get_namespace
from ._scalar_grad import metric_value_and_grad
from ._scale import scale_range
from ._thresholds import Threshold, best_threshold

__version__ = "0.1.0"

__all__ = [
    "APPROXIMATIONS",
    "AVERAGES",
    "TASKS",
    "SharpenedSoftmax",
    "average_metric",
    "class_confusion",
    "soft_class_confusion",
    "METRICS",
    "AnyLossApproximation",
    "Approximation",
    "Confusion",
    "DifferentiableApproximation",
    "LossConfigMixin",
    "IdentityApproximation",
    "SolCosineApproximation",
    "Threshold",
    "accuracy_loss",
    "anyloss",
    "balanced_accuracy_loss",
    "best_threshold",
    "check_scale",
    "confusion",
    "confusion_loss",
    "f1_loss",
    "fbeta_loss",
    "get_approximation",
    "get_metric",
    "get_namespace",
    "metric_value_and_grad",
    "gmean_loss",
    "ratio",
    "register_metric",
    "scale_range",
    "score",
    "soft_confusion",
    "soft_confusion_with_pullback",
    "with_metric",
]
