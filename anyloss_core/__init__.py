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

# The public names (``__all__``): what a user of the core needs.  The adapters'
# plumbing lives in :mod:`anyloss_core.adapters`.
from ._approximations import APPROXIMATIONS, AnyLossApproximation, IdentityApproximation, SolCosineApproximation
from ._confusion import confusion, soft_confusion
from ._losses import (
    accuracy_loss,
    anyloss,
    balanced_accuracy_loss,
    confusion_loss,
    f1_loss,
    fbeta_loss,
    gmean_loss,
    score,
)
from ._metrics import METRICS, Confusion, get_metric, ratio, register_metric
from ._multiclass import AVERAGES, TASKS, SharpenedSoftmax
from ._scale import scale_range
from ._thresholds import Threshold, best_threshold

__version__ = "0.1.0"

# Still importable here, outside ``__all__``, so that code and docs written before the
# adapter interface moved to ``anyloss_core.adapters`` keep working: the plumbing, and the
# per-class functions that ``soft_confusion`` / ``confusion`` / ``score`` with ``task=`` cover.
from ._approximations import Approximation as Approximation
from ._approximations import DifferentiableApproximation as DifferentiableApproximation
from ._approximations import get_approximation as get_approximation
from ._confusion import soft_confusion_with_pullback as soft_confusion_with_pullback
from ._losses import with_metric as with_metric
from ._multiclass import average_metric as average_metric
from ._multiclass import class_confusion as class_confusion
from ._multiclass import soft_class_confusion as soft_class_confusion
from ._namespace import get_namespace as get_namespace
from ._scale import check_scale as check_scale

__all__ = [
    "APPROXIMATIONS",
    "AVERAGES",
    "AnyLossApproximation",
    "Confusion",
    "IdentityApproximation",
    "METRICS",
    "SharpenedSoftmax",
    "SolCosineApproximation",
    "TASKS",
    "Threshold",
    "accuracy_loss",
    "anyloss",
    "balanced_accuracy_loss",
    "best_threshold",
    "confusion",
    "confusion_loss",
    "f1_loss",
    "fbeta_loss",
    "get_metric",
    "gmean_loss",
    "ratio",
    "register_metric",
    "scale_range",
    "score",
    "soft_confusion",
]
