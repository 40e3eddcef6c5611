"""anyloss_keras: AnyLoss as Keras 3 losses, on the TensorFlow, JAX and PyTorch backends.

Importing the package registers the classes for ``keras.models.load_model``
(package "anyloss"), as for any Keras add-on.

Examples:
    >>> import keras, anyloss_keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    >>> model.compile(optimizer="adam", loss=anyloss_keras.F1Loss())
"""

from ._losses import AccuracyLoss, AnyLoss, BalancedAccuracyLoss, F1Loss, FBetaLoss, GMeanLoss, RunningCounts

__all__ = ["AccuracyLoss", "AnyLoss", "BalancedAccuracyLoss", "F1Loss", "FBetaLoss", "GMeanLoss", "RunningCounts"]
