"""``keras.losses.Loss`` subclasses: ``AnyLoss(metric=...)`` and the named classes."""

from __future__ import annotations

import functools
from typing import Any

import keras
from keras import ops

import anyloss_core as al
from anyloss_core.adapters import DEFAULT_RESCUE, DEFAULT_SCALE, LossConfigAttributes, running_counts_shape

from . import (
    _checks,
    _fast_paths,  # noqa: F401  (registers the Keras shim's forms with the core)
)
from . import _namespace as kxp

__all__ = ["AnyLoss", "F1Loss", "FBetaLoss", "AccuracyLoss", "GMeanLoss", "BalancedAccuracyLoss", "RunningCounts"]

_register = keras.saving.register_keras_serializable(package="anyloss")


@_register
class AnyLoss(LossConfigAttributes, keras.losses.Loss):
    r"""AnyLoss for ``model.compile``: ``1 - metric(soft confusion counts)`` of the batch.

    Probabilities by default (``from_logits=False``, as
    ``keras.losses.BinaryCrossentropy``).  ``sample_weight`` (from ``fit``) weights
    the soft counts: weighted TP, FP, FN, TN, not a multiplier on the result.  The
    loss is a batch statistic, so Keras's ``reduction`` does not apply: the call
    returns the scalar loss of the batch.  Works unchanged on the TensorFlow, JAX
    and PyTorch backends; serializable (``get_config`` carries every parameter).
    The checked arguments are ``loss_fn.config`` (an
    :class:`anyloss_core.adapters.LossConfig`); ``loss_fn.metric``, ``loss_fn.scale``...
    read it.

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
        momentum: ``None`` (default): the loss of the batch.  A number ``m`` in (0, 1]:
            running counts for mini-batches (SOX; see the training how-to): the variable
            ``running_counts`` (tn, fn, fp, tp as fractions; ``(num_classes, 4)`` per class,
            so ``num_classes`` is then required for multi-class / multi-label) becomes
            ``(1 - m) * running + m * batch`` at every training call, and the loss is ``1 -
            metric`` at the running counts, with the gradient of the batch's counts
            weighted by the metric's slope there.  ``m = 1`` is the plain loss.  Calls that
            Keras makes to evaluate (``evaluate``, the validation pass of ``fit``: a
            compiled step that takes no gradient) return the batch's loss and leave the
            state alone.  Pass ``metrics=[loss.running_metric]`` to ``compile``: the
            state then travels with the model's metrics, which the JAX backend needs (it
            trains statelessly; without it ``fit`` stops with an error naming this fix),
            and ``fit`` logs the metric at the running counts (``running_f1``...).  The
            state is saved with the model (``model.save``); ``reset_running_counts()``
            empties it.
        rescue: the weight of the rescue gradient (0.1): samples on the wrong side of the
            threshold also get ``rescue`` times binary cross-entropy's gradient, the loss's
            value unchanged, so confidently wrong samples (whose AnyLoss gradient vanishes)
            are still corrected; 0 is the paper's gradient exactly.  Binary task only.
        **metric_params: the metric's parameters, e.g. ``beta=2.0``.

    Examples:
        >>> import numpy as np, anyloss_keras
        >>> loss_fn = anyloss_keras.AnyLoss(metric="fbeta", beta=2.0)
        >>> float(loss_fn(np.array([[0], [1]]), np.array([[0.01], [0.99]]))) < 1e-6
        True

        Running counts (the JAX backend needs the metric; on the others it adds the log):

        >>> import keras
        >>> loss_fn = anyloss_keras.F1Loss(momentum=0.1)
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
        >>> model.compile(optimizer="adam", loss=loss_fn, metrics=[loss_fn.running_metric])
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
        momentum: float | None = None,
        rescue: float = DEFAULT_RESCUE,
        **metric_params: Any,
    ) -> None:
        metric = self.fixed_metric or metric
        default_name = f"{metric}_anyloss" if isinstance(metric, str) else "anyloss"
        super().__init__(name=name or default_name, reduction=reduction, dtype=dtype)
        self.config = self._config_from(locals())  # checks every argument; ``loss_fn.metric``... read it
        if not isinstance(distributed, bool):
            raise TypeError(f"distributed must be True or False, got {distributed!r}")
        self.distributed = distributed
        self._eager_checks_left = _checks.EAGER_CHECKS  # state of the probability check, not config
        self._warned = False
        # The state: a variable owned by a metric, so that it can travel in the trainer's
        # metrics state (JAX trains statelessly); None without momentum (today's loss).
        self.running_metric: RunningCounts | None = None
        self.running_counts: Any = None
        if self.momentum is not None:
            self.running_metric = RunningCounts(self)
            self.running_counts = self.running_metric.counts

    def reset_running_counts(self) -> None:
        """Empty the running counts (zeros): the next training batch fills them, as at the start."""
        if self.running_counts is None:
            raise RuntimeError(f"{type(self).__name__} has no running counts: build it with momentum=...")
        self.running_counts.assign(ops.zeros(self.running_counts.shape, dtype=self.running_counts.dtype))

    # Saved with the model: ``model.save`` visits ``model.loss`` and stores these.
    def save_own_variables(self, store: Any) -> None:
        if self.running_counts is not None:
            store["running_counts"] = keras.ops.convert_to_numpy(self.running_counts)

    def load_own_variables(self, store: Any) -> None:
        if self.running_counts is not None and store is not None and "running_counts" in store:
            self.running_counts.assign(store["running_counts"])

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return self._loss(y_true, y_pred, None)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        # Keras's Loss.__call__ multiplies per-sample losses by the weights and then
        # reduces; a confusion-matrix loss must instead weight the counts.
        if keras.backend.backend() == "tensorflow":
            return _unconverted(type(self)._weighted_call)(self, y_true, y_pred, sample_weight)
        return self._weighted_call(y_true, y_pred, sample_weight)

    def _weighted_call(self, y_true: Any, y_pred: Any, sample_weight: Any) -> Any:
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            y_true = ops.convert_to_tensor(y_true)
            if sample_weight is not None:
                sample_weight = ops.convert_to_tensor(sample_weight, dtype=self.dtype)
            return self._loss(y_true, y_pred, sample_weight)

    def _loss(self, y_true: Any, y_pred: Any, sample_weight: Any) -> Any:
        if self.validate and not self.from_logits:
            y_pred = _checks.check_probabilities(ops.convert_to_tensor(y_pred), self)
        if self.task == "binary" and self.momentum is None and keras.backend.backend() == "tensorflow":
            loss = self._tensorflow_loss(y_true, y_pred, sample_weight)
            if loss is not None:
                return loss
        if keras.backend.backend() == "torch" and self.task == "binary" and not self.distributed \
                and not (self.momentum is not None and _updates_state(y_pred)):
            # The torch adapter's one-node backward (the same core math, fewer kernels), the rescue gradient
            # added by its pullback (a rescue term in keras.ops would be a second graph over every sample).
            from anyloss_torch.interop import config_loss

            return config_loss(self.config, y_pred, y_true, sample_weight)
        if keras.backend.backend() == "jax" and self.task == "binary" \
                and not (self.momentum is not None and _updates_state(y_pred)) \
                and not any(isinstance(t, keras.KerasTensor) for t in (y_true, y_pred, sample_weight)):
            # The JAX adapter's binary loss (the same core math): its counts from sums over the predictions, its
            # rescue term a zero with the rescue slope as gradient, its sigmoids kept or recomputed by the batch's
            # size; through keras.ops the step kept two n-element temporaries and took 1.31x-1.56x Keras's BCE at
            # 1e7 (docs/performance.md, fifteenth round).  distributed needs nothing here: Keras on JAX shards
            # global arrays, whose sums are global already.  A KerasTensor (a symbolic call on keras.Input)
            # keeps keras.ops, which knows it.
            from anyloss_jax.interop import config_loss as jax_config_loss

            return jax_config_loss(self.config, y_pred, y_true, sample_weight)
        # A term of value 0 whose gradient revives confidently wrong samples (anyloss_core._rescue),
        # binary task; it also watches for stuck batches.
        rescue = self.config.rescue_gradient(y_true, y_pred, sample_weight, xp=kxp)
        if isinstance(rescue, float):
            return self._metric_loss(y_true, y_pred, sample_weight)
        return self._metric_loss(y_true, y_pred, sample_weight) + scale_for_replicas(rescue)

    def _tensorflow_loss(self, y_true: Any, y_pred: Any, sample_weight: Any) -> Any:
        # The counts with the core's closed-form pullback, the rescue gradient in it (anyloss_keras._tensorflow);
        # None where that does not apply.
        from ._tensorflow import binary_counts

        result = binary_counts(self.config, y_true, y_pred, sample_weight)
        if result is None:
            return None
        counts, rescue = result
        if self.distributed:
            counts = sum_over_replicas(counts)
        loss = self.config.loss_from_counts(counts, xp=kxp)
        return scale_for_replicas(loss + rescue if self.rescue else loss)

    def _metric_loss(self, y_true: Any, y_pred: Any, sample_weight: Any) -> Any:
        if self.momentum is not None and _updates_state(y_pred):
            return self._running_loss(y_true, y_pred, sample_weight)
        counts = self.config.soft_counts(y_true, y_pred, sample_weight, xp=kxp)
        if self.distributed:
            counts = sum_over_replicas(counts)
        return scale_for_replicas(self.config.loss_from_counts(counts, xp=kxp))

    def _running_loss(self, y_true: Any, y_pred: Any, sample_weight: Any) -> Any:
        counts = self.config.soft_counts(y_true, y_pred, sample_weight, xp=kxp)
        if self.distributed:
            counts = sum_over_replicas(counts)  # every replica then computes the same state
        variable = self.running_counts
        scope = _stateless_scope()
        if scope is not None and scope.get_current_value(variable) is None and not _in_symbolic_scope():
            raise RuntimeError(
                f"{type(self).__name__}(momentum={self.momentum}) keeps its running counts in a Keras variable "
                "that this training step does not carry: Keras on the JAX backend trains statelessly and "
                "carries only the model's and its metrics' variables from step to step, so the counts "
                "would be silently dropped. Pass the loss's state as a metric when compiling: "
                "model.compile(..., loss=loss_fn, metrics=[loss_fn.running_metric])"
            )
        state = ops.convert_to_tensor(variable)
        loss, new_state = self.config.running_loss_from_counts(counts, state, stop_gradient=ops.stop_gradient,
                                                               xp=kxp)
        if not _in_symbolic_scope():  # Keras's shape-only build pass changes nothing
            new_state = ops.cast(new_state, variable.dtype)
            if scope is None and keras.backend.backend() == "jax":
                import jax

                if isinstance(new_state, jax.core.Tracer):
                    raise RuntimeError(
                        f"{type(self).__name__}(momentum=...) cannot update its running counts inside a bare "
                        "jax.jit / jax.grad: a Keras variable holds them. Train with model.fit, or use the pure "
                        "anyloss_jax.running_anyloss(logits, labels, state, momentum=...) in JAX code."
                    )
            variable.assign(new_state)
        return scale_for_replicas(loss)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(self.config.to_dict())
        config["distributed"] = self.distributed
        return config


@functools.cache
def _unconverted(method: Any) -> Any:
    """``method`` marked for AutoGraph as not to convert.

    A user's ``tf.function`` converts the Python functions it calls, and so everything below the loss: the core
    is straight-line array code with no control flow on tensors to convert, and converting it took time and
    warned (``_binary_counts`` declares a closure's variable with an annotation, which AutoGraph cannot make
    ``nonlocal``).  Keras's own ``fit`` calls the loss from Keras's code, which AutoGraph never converts.
    """
    import tensorflow as tf

    return tf.autograph.experimental.do_not_convert(method)


def _stateless_scope() -> Any:
    from keras.src.backend.common.stateless_scope import get_stateless_scope

    return get_stateless_scope()


def _in_symbolic_scope() -> bool:
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope

    return bool(in_symbolic_scope())


def _updates_state(y_pred: Any) -> bool:
    """Whether a call with running counts is a training step (update) or an evaluation (leave alone).

    Keras tells its loss nothing about training, so each backend's own sign is read: an
    evaluation is a step that takes no gradient.  PyTorch: Keras evaluates under
    ``torch.no_grad()``.  TensorFlow: a traced ``tf.function`` with no gradient tape
    recording (Keras's compiled ``evaluate``); eager calls update (a direct call cannot
    be told from ``run_eagerly=True`` evaluation).  JAX: inside Keras's stateless step,
    the predictions are being differentiated (``jax.value_and_grad``) or not; eager
    calls update.
    """
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        return bool(torch.is_grad_enabled())
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.executing_eagerly():
            return True
        try:
            from tensorflow.python.eager import record
        except ImportError:  # pragma: no cover - older TensorFlow: update, as before
            return True
        return bool(record.could_possibly_record())
    if backend == "jax":
        import jax

        if not isinstance(y_pred, jax.core.Tracer) or _stateless_scope() is None:
            return True  # eager, or a bare jit (which raises a clear error later)
        try:
            from jax._src.interpreters import ad
        except ImportError:  # pragma: no cover
            return True
        return isinstance(y_pred, (ad.JVPTracer, getattr(ad, "LinearizeTracer", ad.JVPTracer)))
    return True


class _Owner:
    """Holds the metric's loss out of Keras's reach: the saving code walks a loaded model's
    attributes without a guard against cycles, and loss -> metric -> loss would be one."""

    def __init__(self, loss: AnyLoss) -> None:
        self.loss = loss


@_register
class RunningCounts(keras.metrics.Metric):
    """The running counts of an :class:`AnyLoss` built with ``momentum``, as a Keras metric.

    The loss updates the counts; this metric only carries them in Keras's state (the
    JAX backend's stateless training step carries the model's and the metrics' variables,
    nothing else) and reports the loss's metric at the running counts, e.g. the running F1.
    ``update_state`` and ``reset_state`` do nothing: the counts persist across epochs
    (as BatchNorm's moving statistics do); ``loss.reset_running_counts()`` empties them.
    Get it from the loss (``loss.running_metric``), do not build it yourself.

    Examples:
        >>> import anyloss_keras
        >>> loss_fn = anyloss_keras.F1Loss(momentum=0.1)
        >>> loss_fn.running_metric.name, tuple(loss_fn.running_counts.shape)
        ('running_f1', (4,))
    """

    def __init__(self, loss: AnyLoss, name: str | None = None, dtype: Any = None) -> None:
        if not isinstance(loss, AnyLoss) or loss.momentum is None:
            raise TypeError(f"RunningCounts needs an AnyLoss built with momentum=..., got {loss!r}")
        metric = loss.fixed_metric or loss.metric
        super().__init__(name=name or (f"running_{metric}" if isinstance(metric, str) else "running_metric"),
                         dtype="float32")
        self._owner = _Owner(loss)
        shape = running_counts_shape(loss.task, loss.num_classes)
        # "mean" over replicas: with distributed=True every replica holds the same state.
        self.counts = self.add_variable(shape=shape, initializer="zeros", dtype="float32", aggregation="mean",
                                        name="running_counts")

    def update_state(self, *args: Any, **kwargs: Any) -> None:
        pass  # the loss updates the counts

    def reset_state(self) -> None:
        pass  # Keras resets metrics every epoch; the running counts persist

    def result(self) -> Any:
        counts = ops.convert_to_tensor(self.counts)
        confusion = al.Confusion(*(counts[..., k] for k in range(4)))
        return 1.0 - self._owner.loss.config.loss_from_counts(confusion, xp=kxp)

    def get_config(self) -> dict[str, Any]:
        # The loss, not a copy: inside model.save / load_model (one object-sharing scope)
        # the loss in compile's config and this one deserialize to the same object.
        return {"loss": keras.saving.serialize_keras_object(self._owner.loss), "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RunningCounts:
        loss = keras.saving.deserialize_keras_object(config["loss"])
        metric = loss.running_metric
        if metric is None:
            raise ValueError("RunningCounts config holds a loss without momentum")
        return metric


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
        from anyloss_torch.interop import all_reduce_counts

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
