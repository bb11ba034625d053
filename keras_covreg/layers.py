"""The penalties as layers: mask-aware, and applied inside wrappers.

An ``activity_regularizer=`` sees only a layer's output tensor: Keras calls it
before it attaches the output's mask, so padded time steps count as
observations, and ``TimeDistributed`` never calls it at all (it runs the inner
layer's ``call``). These layers, in the spirit of
``keras.layers.ActivityRegularization``, pass their input through unchanged
and add the penalty of its unmasked observations to the model's losses with
``add_loss``: Keras adds that value as it is on every release (it divides
only activity-regularizer values by the batch size), so the loss receives
exactly ``strength * penalty``.

Place one right after the layer whose outputs it should penalize::

    x = keras.layers.LSTM(16, return_sequences=True)(masked_inputs)
    x = CovarianceRegularization(0.08)(x)   # padded steps left out
"""

from typing import Any

import keras

from keras_covreg.regularizers import (
    ActivityL1Regularizer,
    CovarianceRegularizer,
    DeCovRegularizer,
    _ActivityRegularizer,
    _CovarianceBasedRegularizer,
)

__all__ = ["ActivityL1Regularization", "CovarianceRegularization", "DeCovRegularization"]


class _PenaltyLayer(keras.layers.Layer):
    """Passes its input through and adds ``regularizer.penalty(input, mask)``."""

    def __init__(self, regularizer: _ActivityRegularizer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.regularizer = regularizer
        self.supports_masking = True

    def call(self, inputs: Any, mask: Any = None) -> Any:
        self.add_loss(self.regularizer.penalty(inputs, mask=mask))
        return inputs

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self.regularizer.get_config()}


class _CovarianceBasedLayer(_PenaltyLayer):
    """A layer form of a `_CovarianceBasedRegularizer` (`regularizer_class`)."""

    regularizer_class: type[_CovarianceBasedRegularizer]

    def __init__(self, strength: float, *, spatial_mode: str = "channels",
                 channel_axis: int = -1, synchronized: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(
            self.regularizer_class(strength, spatial_mode=spatial_mode,
                                   channel_axis=channel_axis, synchronized=synchronized),
            **kwargs,
        )


@keras.saving.register_keras_serializable(package="keras_covreg")
class CovarianceRegularization(_CovarianceBasedLayer):
    r"""Adds ``strength * L_Sigma`` of its input to the loss; masks respected.

    The layer form of `CovarianceRegularizer` (Kagebaeck & Mogren, eq. 1-2):

    $$L_\Sigma = \frac{1}{p^2} \sum_{i,j=1}^{p} |C_{ij}|, \qquad
    C = \frac{1}{N - 1} (H - \mathbf{1}\bar{h})^\top (H - \mathbf{1}\bar{h})$$

    with $H$ the $N$ *unmasked* observations, the rows that the mask keeps. The output is the input,
    unchanged, with its mask. Use it instead of ``activity_regularizer=``
    after masked sequence layers and inside or around ``TimeDistributed``.

    Args:
        strength: lambda, a finite float >= 0.
        spatial_mode: ``"channels"`` (default) or ``"flatten"``, as in
            `CovarianceRegularizer`. A time-step mask of shape (batch_size,
            timesteps) needs ``"channels"``.
        channel_axis: the feature axis for ``"channels"``. Defaults to -1.
        synchronized: all-reduce the statistics over ``tf.distribute``
            replicas, as in `CovarianceRegularizer`.
        **kwargs: base layer arguments (``name``, ``dtype``, ...).

    Input shape:
        (batch_size, ..., features), floating; with an optional mask of shape
        (batch_size,) or of the input's shape without the channel axis.

    Output shape:
        The input's.

    Raises:
        ValueError: for a bad argument, activations of rank < 2, or a mask
            that does not fit the input (see `CovarianceRegularizer.penalty`).

    Examples:
        >>> import keras, numpy as np
        >>> layer = CovarianceRegularization(0.5)
        >>> x = np.array([[0.0, 0.0], [2.0, -2.0], [9.0, 9.0]], "float32")
        >>> y = layer(x, mask=np.array([True, True, False]))  # C = [[2, -2], [-2, 2]]
        >>> float(layer.losses[0])
        1.0
    """

    regularizer_class = CovarianceRegularizer


@keras.saving.register_keras_serializable(package="keras_covreg")
class DeCovRegularization(_CovarianceBasedLayer):
    """Adds ``strength * DeCov`` of its input to the loss; masks respected.

    The layer form of `DeCovRegularizer` (Cogswell et al., ICLR 2016, eq. 1):
    ``1/2 (||C||_F^2 - ||diag(C)||_2^2)`` with ``C`` over the N unmasked
    observations and denominator N. Arguments, shapes and errors as
    `CovarianceRegularization`.

    Examples:
        >>> import keras, numpy as np
        >>> layer = DeCovRegularization(1.0)
        >>> y = layer(np.array([[0.0, 0.0], [2.0, -2.0]], "float32"))
        >>> float(layer.losses[0])  # C = [[1, -1], [-1, 1]]
        1.0
    """

    regularizer_class = DeCovRegularizer


@keras.saving.register_keras_serializable(package="keras_covreg")
class ActivityL1Regularization(_PenaltyLayer):
    """Adds ``strength * mean(|h|)`` over the unmasked activations to the loss.

    The layer form of `ActivityL1Regularizer`: the mean absolute activation
    over every unmasked observation and feature (``reduction="mean"``), or
    their sum (``reduction="sum"``). Shapes and errors as
    `CovarianceRegularization`.

    Args:
        strength: a finite float >= 0.
        reduction: ``"mean"`` (default) or ``"sum"``, as in
            `ActivityL1Regularizer`.
        spatial_mode: ``"channels"`` (default) or ``"flatten"``.
        channel_axis: the feature axis. Defaults to -1.
        **kwargs: base layer arguments (``name``, ``dtype``, ...).

    Examples:
        >>> import keras, numpy as np
        >>> layer = ActivityL1Regularization(0.5)
        >>> x = np.array([[1.0, -3.0], [100.0, 100.0]], "float32")
        >>> y = layer(x, mask=np.array([True, False]))
        >>> float(layer.losses[0])
        1.0
    """

    def __init__(self, strength: float, *, reduction: str = "mean",
                 spatial_mode: str = "channels", channel_axis: int = -1,
                 **kwargs: Any) -> None:
        super().__init__(ActivityL1Regularizer(strength, reduction=reduction,
                                               spatial_mode=spatial_mode,
                                               channel_axis=channel_axis), **kwargs)
