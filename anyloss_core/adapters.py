"""The adapter interface: what ``anyloss_torch``, ``anyloss_jax`` and ``anyloss_keras`` build on.

Users need only :mod:`anyloss_core`; a backend adapter (or a tool that drives one,
as ``anyloss_bench``) imports its plumbing from here, and from nowhere else in the
core: the private modules may move, these names stay.

Configuration
    :class:`LossConfig` (a loss's validated keywords, and the calls into the core that
    use them), :class:`LossConfigAttributes` (the read-only ``loss_fn.metric``,
    ``loss_fn.scale``... of a class holding ``self.config``), :data:`DEFAULT_SCALE`,
    :data:`DEFAULT_RESCUE`, and the argument checks :func:`check_scale`,
    :func:`check_task`, :func:`check_momentum`, :func:`check_rescue`.
Namespaces, fast paths and approximations
    :func:`get_namespace`, :func:`values_available` (whether reading an array's values
    is cheap and allowed: concrete, not traced), :class:`FastPaths` and
    :func:`register_fast_paths` (a framework's native form of the core's replaceable
    steps), :func:`get_approximation`, :class:`Approximation` and
    :class:`DifferentiableApproximation` (an approximation with a closed-form
    derivative, which :func:`soft_confusion_with_pullback` needs).
Counts and losses
    :func:`soft_confusion_with_pullback` (the counts and their closed-form pullback, for
    a framework's custom backward) and its multi-class form
    :func:`soft_class_confusion_with_pullback` (softmax decisions; the pullback a
    :class:`ClassPullback`, rebuilt from its arrays), :func:`with_metric` (``f1_loss`` from ``anyloss``),
    running counts (:func:`running_confusion_loss`, :func:`running_counts_shape`) and
    the rescue gradient (:func:`prepared_for_rescue`, :func:`rescue_term`,
    :func:`rescue_slope`, :func:`rescue_for`), and :func:`check_metric_value` (a user
    metric's value in [0, 1], for an adapter that evaluates metrics itself).

Examples:
    >>> import numpy as np
    >>> from anyloss_core.adapters import LossConfig
    >>> config = LossConfig("f1", from_logits=True)
    >>> counts = config.soft_counts(np.array([0, 1, 1]), np.array([-4.0, 3.0, 5.0]))
    >>> round(float(config.loss_from_counts(counts)), 4)
    0.0
"""

from __future__ import annotations

from ._approximations import Approximation, DifferentiableApproximation, get_approximation
from ._config import LossConfig, LossConfigAttributes
from ._confusion import soft_confusion_with_pullback
from ._fast_paths import FRESH_PAGES_BYTES, FastPaths, fills_fresh_pages, register_fast_paths  # noqa: F401  (see below)
from ._inputs import checked_arguments  # noqa: F401  (see below)
from ._losses import with_metric
from ._metrics import check_metric_value, is_built_in_metric  # noqa: F401  (see below)
from ._multiclass import check_task
from ._multiclass_pullback import ClassPullback, soft_class_confusion_with_pullback  # noqa: F401  (see below)
from ._namespace import get_namespace, values_available
from ._rescue import DEFAULT_RESCUE, check_rescue, prepared_for_rescue, rescue_for, rescue_slope, rescue_term
from ._running import check_momentum, running_confusion_loss, running_counts_shape
from ._scale import DEFAULT_SCALE, check_scale

# ClassPullback (the multi-class pullback, rebuilt from its arrays by a JAX custom_vjp), is_built_in_metric (for
# torch's compiled regions), checked_arguments (for Keras on TensorFlow's eager calls, which check eagerly and
# count in a traced function) and FRESH_PAGES_BYTES with fills_fresh_pages (the size from which torch's and JAX's
# compiled CPU steps recompute rather than keep an array) are importable from here but left out of __all__: the
# interface is pinned at 25 names (tests/test_public_api.py).
__all__ = [
    "Approximation",
    "DEFAULT_RESCUE",
    "DEFAULT_SCALE",
    "DifferentiableApproximation",
    "FastPaths",
    "LossConfig",
    "LossConfigAttributes",
    "check_metric_value",
    "check_momentum",
    "check_rescue",
    "check_scale",
    "check_task",
    "get_approximation",
    "get_namespace",
    "prepared_for_rescue",
    "register_fast_paths",
    "rescue_for",
    "rescue_slope",
    "rescue_term",
    "running_confusion_loss",
    "running_counts_shape",
    "soft_class_confusion_with_pullback",
    "soft_confusion_with_pullback",
    "values_available",
    "with_metric",
]
