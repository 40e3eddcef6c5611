"""``keras.losses.Loss`` subclasses: ``AnyLoss(metric=...)`` and the named classes."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

import anyloss_core as al
from anyloss_core._scale import DEFAULT_SCALE

from . import _checks
from . import _namespace as kxp

__all__ = ["AnyLoss", "F1Loss", "FBetaLoss", "AccuracyLoss", "GMeanLoss", "BalancedAccuracyLoss"]

_register = keras.saving.register_keras_serializable(package="anyloss")


@_register
class AnyLoss(al.LossConfigMixin, keras.losses.Loss):
    r"""AnyLoss for ``model.compile``: ``1 - metric(soft confusion counts)`` of the batch.

    Probabilities by default (``from_logits=False``, as
    ``keras.losses.BinaryCrossentropy``).  ``sample_weight`` (from ``fit``) weights
    the soft counts: weighted TP, FP, FN, TN, not a multiplier on the result.  The
    loss is a batch statistic, so Keras's ``reduction`` does not apply: the call
    returns the scalar loss of the batch.  Works unchanged on the TensorFlow, JAX
    and PyTorch backends; serializable (``get_config`` carries every parameter).

    Args:
        metric: a metric name ("f1", "fbeta", "gmean", ...) or a registered callable.
        from_logits: ``y_pred`` holds logits instead of probabilities.
        scale: the amplifying scale ``L`` (73, as in the paper).
        approximation: "anyloss", "identity" or "sol-cosine".
        validate: check the values: labels when they are concrete (eager calls), and that
            ``y_pred`` holds probabilities when ``from_logits=False``, also inside compiled
            ``fit`` (an assertion in the TensorFlow graph, a callback on failure under JAX;
            the first eager calls on an accelerator), so that logits passed as probabilities
            stop training with an error naming ``from_logits=True``.  ``False`` turns all
            checks off.
        name: the loss name (default: the metric's name with "_anyloss").
        reduction: accepted for Keras compatibility; a batch statistic is not reduced.
        dtype: the dtype the loss is computed in (default: float32, also under mixed precision).
        distributed: make the loss that of the global batch under data-parallel training:
            the four counts are summed over the replicas of a ``tf.distribute`` strategy (one
            all-reduce of four numbers per step), or over the ``torch.distributed`` process group on
            the PyTorch backend.  On the JAX backend, ``keras.distribution.DataParallel`` already
            computes the loss on the global (sharded) batch, so there is nothing to sum.
        task: "binary" (default), "multiclass" (``(n, C)`` scores, softmax; class ids or
            one-hot targets) or "multilabel" (``(n, C)``, a sigmoid per label; multi-hot).
        average: "macro" (default), "micro", "weighted" or "none", for the per-class metrics.
        num_classes: checked against ``y_pred``'s class axis when given.
        ignore_index: a class id whose rows do not count (class-id targets).
        **metric_params: the metric's parameters, e.g. ``beta=2.0``.

    Examples:
        >>> import numpy as np, anyloss_keras
        >>> loss_fn = anyloss_keras.AnyLoss(metric="fbeta", beta=2.0)
        >>> float(loss_fn(np.array([[0], [1]]), np.array([[0.01], [0.99]]))) < 1e-6
        True
    """

    def __init__(
        self,
        metric: Any = "f1",
        *,
        from_logits: bool = False,
        scale: float = DEFAULT_SCALE,
        approximation: str = "anyloss",
        validate: bool = True,
        name: str | None = None,
        reduction: str = "sum_over_batch_size",
        dtype: Any = None,
        distributed: bool = False,
        task: str = "binary",
        average: str = "macro",
        num_classes: int | None = None,
        ignore_index: int | None = None,
        **metric_params: Any,
    ) -> None:
        metric = self.fixed_metric or metric
        default_name = f"{self.fixed_metric or metric}_anyloss" if isinstance(metric, str) else "anyloss"
        super().__init__(name=name or default_name, reduction=reduction, dtype=dtype)
        self._init_config(
            metric,
            from_logits=from_logits,
            scale=scale,
            approximation=approximation,
            validate=validate,
            metric_params=metric_params,
            task=task,
            average=average,
            num_classes=num_classes,
            ignore_index=ignore_index,
        )
        if not isinstance(distributed, bool):
            raise TypeError(f"distributed must be True or False, got {distributed!r}")
        self.distributed = distributed
        self._eager_checks_left = _checks.EAGER_CHECKS  # state of the probability check, not config
        self._warned = False

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return self._loss(y_true, y_pred, None)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        # Keras's Loss.__call__ multiplies per-sample losses by the weights and then
        # reduces; a confusion-matrix loss must instead weight the counts.
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            y_true = ops.convert_to_tensor(y_true)
            if sample_weight is not None:
                sample_weight = ops.convert_to_tensor(sample_weight, dtype=self.dtype)
            return self._loss(y_true, y_pred, sample_weight)

    def _loss(self, y_true: Any, y_pred: Any, sample_weight: Any) -> Any:
        if self.validate and not self.from_logits:
            y_pred = _checks.check_probabilities(ops.convert_to_tensor(y_pred), self)
        if keras.backend.backend() == "torch" and self.task == "binary" and not self.distributed:
            # The torch adapter's one-node backward (the same core math, fewer kernels).
            from anyloss_torch._autograd import soft_loss

            return soft_loss(y_pred, y_true, sample_weight, self._metric_fn, from_logits=self.from_logits,
                             scale=self.scale, approximation=self.approximation, validate=self.validate)
        counts = self.soft_counts(y_true, y_pred, sample_weight, xp=kxp)
        if self.distributed:
            counts = sum_over_replicas(counts)
        return scale_for_replicas(self.loss_from_counts(counts, xp=kxp))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(self.config_dict())
        config["distributed"] = self.distributed
        return config


def sum_over_replicas(counts: al.Confusion) -> al.Confusion:
    """The counts summed over the data-parallel replicas of the running backend, with gradients.

    TensorFlow: an all-reduce in the replica context (its gradient is the all-reduce of the
    gradients, so each replica's counts receive the global loss's gradient); outside a
    strategy there is one replica and nothing to do.  PyTorch backend: the torch
    adapter's all-reduce over the default process group.  JAX: Keras distributes by
    sharding global arrays, on which the sums are already global.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return counts  # cross-replica context or a single replica: the batch is global
        summed = context.all_reduce(tf.distribute.ReduceOp.SUM, ops.stack(tuple(counts)))
        return al.Confusion(*ops.unstack(summed, 4))
    if backend == "torch":
        from anyloss_torch._distributed import all_reduce_counts

        return all_reduce_counts(counts)
    return counts


def scale_for_replicas(loss: Any) -> Any:
    """Divide by the number of ``tf.distribute`` replicas, as Keras's own losses do.

    Keras sums the replicas' gradients and reports the sum of the replicas' losses; its
    built-in losses therefore return ``loss / replicas``.  With ``distributed=True``
    every replica computes the global loss, and the sum gives it back exactly.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            loss = loss * (1.0 / replicas)
    return loss


@_register
class F1Loss(AnyLoss):
    r"""F1 loss :math:`1 - 2TP / (2TP + FP + FN)`; see :class:`AnyLoss`."""

    fixed_metric = "f1"


@_register
class FBetaLoss(AnyLoss):
    r"""F-beta loss; ``beta > 1`` favours recall; see :class:`AnyLoss`."""

    fixed_metric = "fbeta"

    def __init__(self, beta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(beta=beta, **kwargs)


@_register
class AccuracyLoss(AnyLoss):
    r"""Accuracy loss :math:`1 - (TP + TN) / n`; see :class:`AnyLoss`."""

    fixed_metric = "accuracy"


@_register
class GMeanLoss(AnyLoss):
    r"""G-mean loss :math:`1 - \sqrt{TPR \cdot TNR}`; see :class:`AnyLoss`."""

    fixed_metric = "gmean"


@_register
class BalancedAccuracyLoss(AnyLoss):
    r"""Balanced-accuracy loss :math:`1 - (TPR + TNR) / 2`; see :class:`AnyLoss`."""

    fixed_metric = "balanced_accuracy"
