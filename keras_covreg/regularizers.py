"""Activity regularizers that penalize the covariance of a layer's outputs.

`CovarianceRegularizer` is the paper's L_Sigma (Kagebaeck & Mogren, eq. 1-2);
`DeCovRegularizer` and `ActivityL1Regularizer` are the penalties it is compared
with. All three:

* add exactly ``strength * penalty(batch)`` to the training loss on every
  Keras 3 release. Keras 3.14 began dividing whatever an activity regularizer
  returns by the batch size; the regularizers detect that behaviour at run
  time (`activity_loss_is_divided_by_batch_size`) and return the penalty
  multiplied by the batch size there, so that the division restores it. Call
  `penalty` for the undivided value;
* compute in float32 whatever the activations' dtype (mixed precision);
* treat outputs of rank > 2 (feature maps) as set by ``spatial_mode``;
* are built from ``keras.ops`` only, so they run on every backend, under
  ``jit_compile=True`` and inside ``tf.function`` or ``jax.jit``.
"""

from typing import Any

import keras
from keras import ops

from keras_covreg import _compat, _distribute, _validation

__all__ = ["ActivityL1Regularizer", "CovarianceRegularizer", "DeCovRegularizer"]

SPATIAL_MODES = ("channels", "flatten")
# How `ActivityL1Regularizer` reduces |h| over a batch.
L1_REDUCTIONS = ("mean", "sum")


class _ActivityRegularizer(keras.regularizers.Regularizer):
    """Shared argument handling, dtype policy and batch-size compensation."""

    def __init__(self, strength: float, *, spatial_mode: str = "channels",
                 channel_axis: int = -1) -> None:
        self.strength = _validation.check_finite_nonnegative("strength", strength)
        self.spatial_mode = _validation.check_choice(
            "spatial_mode", spatial_mode, SPATIAL_MODES
        )
        self.channel_axis = _validation.check_channel_axis(channel_axis)
        # Probe Keras once, here and eagerly, and keep the answer as a plain
        # bool: code that tf.function, jax.jit or torch.compile traces then
        # reads an attribute instead of calling the cached probe.
        self._divided_by_batch_size = _compat.activity_loss_is_divided_by_batch_size()

    def __call__(self, x: Any) -> Any:
        """The value Keras expects from an activity regularizer for batch `x`.

        Keras >= 3.14 divides it by the batch size before adding it to the
        loss, so there it is ``penalty(x) * batch_size``; earlier releases add
        it as it is, so there it is ``penalty(x)``. Either way, the loss
        receives exactly ``penalty(x)``.
        """
        value = self.penalty(x)
        if self._divided_by_batch_size:
            value = value * ops.cast(ops.shape(x)[0], value.dtype)
        return value

    def penalty(self, x: Any, mask: Any = None) -> Any:
        """``strength`` times the penalty of batch `x`, a scalar.

        Computed in float32, or in float64 when `x` or Keras's floatx is
        float64, and returned in floatx (``keras.config.floatx()``), the dtype
        in which Keras adds up the losses.

        Args:
            x: a layer's outputs, of shape (batch_size, ..., features), of a
                floating dtype. Dimensions other than the rank may be unknown
                while Keras traces the model; they are read at run time.
            mask: None, or a boolean mask of the observations that count:
                of shape (batch_size,), or of `x`'s shape without the channel
                axis (e.g. (batch_size, timesteps) for (batch_size,
                timesteps, features) with ``spatial_mode="channels"``).
                Masked observations are left out of the statistics.

        Raises:
            ValueError: if `x` has rank < 2, if `channel_axis` is not an axis
                of `x` other than the batch axis, or if `mask` does not fit
                `x`.
            TypeError: if `x` is not of a floating dtype.
        """
        h, weights = self._observations(x, mask)
        value = ops.multiply(
            self._penalty(h, weights), ops.convert_to_tensor(self.strength, dtype=h.dtype))
        return ops.cast(value, keras.config.floatx())

    def _observations(self, x: Any, mask: Any = None) -> Any:
        """`x` as (observations, features) in the compute dtype, and weights.

        The weights are None without a mask, else a 0/1 vector with one entry
        per observation.
        """
        dtype = keras.backend.standardize_dtype(x.dtype)
        if "float" not in dtype:
            raise TypeError(
                f"{type(self).__name__} needs floating activations. "
                f"Received: x of dtype {dtype}"
            )
        shape = tuple(x.shape)
        rank = len(shape)
        if rank < 2:
            raise ValueError(
                f"{type(self).__name__} needs activations of rank >= 2, of shape "
                f"(batch_size, ..., features). Received: x of shape {shape}"
            )
        x = ops.cast(x, _compute_dtype(dtype))
        channels = rank > 2 and self.spatial_mode == "channels"
        if channels:
            axis = _validation.resolve_channel_axis(self.channel_axis, rank)
            if axis != rank - 1:
                x = ops.moveaxis(x, axis, -1)
        weights = None if mask is None else self._weights(mask, x, channels)
        if channels:
            x = ops.reshape(x, (-1, _dim(x, -1)))
        elif rank > 2:
            x = ops.reshape(x, (_dim(x, 0), -1))
        return x, weights

    def _weights(self, mask: Any, x: Any, channels: Any) -> Any:
        """`mask` as one 0/1 weight per observation of `x` (channels last)."""
        rank = len(x.shape)
        mask_rank = len(mask.shape)
        expected = tuple(x.shape[:1]) if mask_rank == 1 else tuple(x.shape[:-1])
        fits = mask_rank == 1 or (channels and mask_rank == rank - 1)
        fits = fits and all(a is None or b is None or a == b
                            for a, b in zip(tuple(mask.shape), expected))
        if not fits:
            raise ValueError(
                f"{type(self).__name__}: `mask` must be of shape (batch_size,) or, "
                "with spatial_mode='channels', of the activations' shape without "
                f"the channel axis. Received: mask of shape {tuple(mask.shape)} "
                f"for activations of shape {tuple(x.shape)} (channels last, "
                f"spatial_mode={self.spatial_mode!r})"
            )
        if mask_rank == 1 and channels:
            # Every position of a sample takes the sample's weight.
            mask = ops.reshape(mask, (-1,) + (1,) * (rank - 2))
            mask = ops.broadcast_to(mask, ops.shape(x)[:-1])
        return ops.reshape(ops.cast(mask, x.dtype), (-1,))

    def _penalty(self, h: Any, weights: Any) -> Any:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {
            "strength": self.strength,
            "spatial_mode": self.spatial_mode,
            "channel_axis": self.channel_axis,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _compute_dtype(dtype: Any) -> Any:
    """float64 if the activations or floatx are float64, else float32."""
    if "float64" in (dtype, keras.config.floatx()):
        return "float64"
    return "float32"


def _dim(x: Any, axis: Any) -> Any:
    """The size of `x` along `axis`: static where known, else read at run time."""
    static = x.shape[axis]
    return static if static is not None else ops.shape(x)[axis]


def _squared_width(h: Any) -> Any:
    """p^2 for the p columns of `h`, in its dtype (p read at run time if unknown)."""
    p = ops.cast(_dim(h, -1), h.dtype)
    return p * p


def _count_and_sum(h: Any, weights: Any) -> Any:
    """The number of observations and their column sums, shape (1, p).

    With weights, only the unmasked rows count. Sums divided by counts stand
    in for ops.mean, which on the torch backend (Keras 3.15) loses float64
    precision (errors of 1e-9 on unit data).
    """
    if weights is None:
        return ops.cast(ops.shape(h)[0], h.dtype), ops.sum(h, axis=0, keepdims=True)
    return ops.sum(weights), ops.sum(h * ops.expand_dims(weights, -1), axis=0, keepdims=True)


def _center(h: Any, n: Any, total: Any, weights: Any) -> Any:
    """`h` minus the mean ``total / n``; masked rows zero."""
    centered = h - total / ops.maximum(n, 1.0)
    return centered if weights is None else centered * ops.expand_dims(weights, -1)


def _centered(h: Any, weights: Any) -> Any:
    """Observations centered on their (weighted) mean, and their count N."""
    n, total = _count_and_sum(h, weights)
    return _center(h, n, total, weights), n


@ops.custom_gradient
def _abs_scatter_sum(centered: Any) -> Any:
    """``sum_ij |S_ij|`` of the scatter ``S = Hc^T Hc``, with a one-product gradient.

    The gradient ``2 Hc sign(S)`` needs one N x p x p product where automatic
    differentiation of ``Hc^T Hc`` spends two. (Its rows sum to zero over the
    observations, so the centering before it adds nothing to the gradient.)
    """
    scatter = ops.matmul(ops.transpose(centered), centered)
    value = ops.sum(ops.abs(scatter))

    def grad(*args: Any, upstream: Any = None) -> Any:
        if upstream is None:
            (upstream,) = args
        return ops.matmul(centered, ops.sign(scatter)) * (upstream * 2.0)

    return value, grad


class _CovarianceBasedRegularizer(_ActivityRegularizer):
    """Adds ``synchronized``: the covariance of the global batch across replicas."""

    # Denominator of the covariance: N - ddof.
    ddof = 1

    def __init__(self, strength: float, *, spatial_mode: str = "channels",
                 channel_axis: int = -1, synchronized: bool = False) -> None:
        super().__init__(strength, spatial_mode=spatial_mode, channel_axis=channel_axis)
        if not isinstance(synchronized, bool):
            raise TypeError(
                f"`synchronized` must be a bool. Received: synchronized={synchronized!r}"
            )
        self.synchronized = synchronized

    def _penalty(self, h: Any, weights: Any) -> Any:
        ctx = _distribute.replica_context() if self.synchronized else None
        if ctx is None:
            centered, n = _centered(h, weights)
            return self._from_centered(centered, n)
        # Two all-reduces, as BatchNormalization(synchronized=True) does, but
        # centering on the global mean before the second one so that float32
        # round-off does not grow with the mean: first (count, sum), then the
        # centered sum of outer products.
        n_local, local_sum = _count_and_sum(h, weights)
        n, total = _distribute.all_reduce_sum(ctx, [n_local, local_sum])
        centered = _center(h, n, total, weights)
        scatter = _distribute.all_reduce_sum(
            ctx, [ops.matmul(ops.transpose(centered), centered)]
        )[0]
        cov = scatter / ops.maximum(n - self.ddof, 1.0)
        # Keras (like tf.nn.scale_regularization_loss) divides each replica's
        # loss by the number of replicas R and sums the replicas' gradients;
        # the all-reduce's gradient already carries every replica's share of
        # the global penalty back to its own activations. Weighting replica r
        # by R * n_r / n makes the weights sum to R, so that the update equals
        # single-device training on the global batch (measured: 1e-7).
        replicas = float(ctx.num_replicas_in_sync)
        return self._from_covariance(cov) * (replicas * n_local / ops.maximum(n, 1.0))

    def _from_centered(self, centered: Any, n: Any) -> Any:
        raise NotImplementedError

    def _from_covariance(self, cov: Any) -> Any:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "synchronized": self.synchronized}


@keras.saving.register_keras_serializable(package="keras_covreg")
class CovarianceRegularizer(_CovarianceBasedRegularizer):
    r"""The covariance penalty L_Sigma of Kagebaeck & Mogren (eq. 1-2).

    For a batch of outputs H of shape (N, p) with sample covariance

    $$C = \frac{1}{N - 1} (H - \mathbf{1}\bar{h})^\top (H - \mathbf{1}\bar{h}),$$

    the training loss receives $\lambda L_\Sigma$ ($\lambda$ = `strength`), with

    $$L_\Sigma = \frac{1}{p^2} \sum_{i,j=1}^{p} |C_{ij}| \qquad \text{(eq. 1-2)}$$

    the diagonal included, so the penalty also shrinks variances and switches
    unneeded units off. A batch of one gives 0.

    Args:
        strength: lambda, a finite float >= 0.
        spatial_mode: how outputs of rank > 2, e.g. (N, H, W, C) feature maps,
            become observations:
            ``"channels"`` (default): the C channels are the features and every
            position of every sample is an observation, so C is C x C;
            ``"flatten"``: each sample flattened is one observation of
            H * W * C features. C is then (H W C) x (H W C): memory and time
            grow with the square of the map size (a 32x32x16 map gives a
            16384 x 16384 float32 matrix, 1 GiB).
        channel_axis: the feature axis for ``"channels"``. Defaults to -1
            (channels last).
        synchronized: under ``tf.distribute`` (e.g. ``MirroredStrategy``),
            all-reduce the sufficient statistics so that every replica
            penalizes the covariance of the *global* batch, like
            ``BatchNormalization(synchronized=True)``; the weight update then
            equals single-device training on that batch. Without it, each
            replica penalizes its own slice: a noisier quantity whose effective
            strength grows with the number of replicas. Changes nothing on a
            single device or under JAX's ``DataParallel`` (which already shows
            the regularizer the global batch).

    Examples:
        >>> import keras
        >>> layer = keras.layers.Dense(
        ...     84, activity_regularizer=CovarianceRegularizer(0.08))
        >>> reg = CovarianceRegularizer(0.5)
        >>> float(reg.penalty(keras.ops.convert_to_tensor(
        ...     [[0.0, 0.0], [2.0, -2.0]])))  # C = [[2, -2], [-2, 2]]
        1.0
    """

    def _from_centered(self, centered: Any, n: Any) -> Any:
        return _abs_scatter_sum(centered) / (
            ops.maximum(n - 1.0, 1.0) * _squared_width(centered))

    def _from_covariance(self, cov: Any) -> Any:
        return ops.sum(ops.abs(cov)) / _squared_width(cov)


@keras.saving.register_keras_serializable(package="keras_covreg")
class DeCovRegularizer(_CovarianceBasedRegularizer):
    r"""DeCov, the penalty of Cogswell et al. (ICLR 2016, "Reducing overfitting
    in deep networks by decorrelating representations", eq. 1).

    $$\lambda \cdot \frac{1}{2} \left(\|C\|_F^2 - \|\operatorname{diag}(C)\|_2^2\right) \qquad \text{(Cogswell et al., eq. 1)}$$

    with, as in that paper, $C = \frac{1}{N} (H - \mathbf{1}\bar{h})^\top (H - \mathbf{1}\bar{h})$. Only the
    off-diagonal covariances are penalized, and squared. Arguments as
    `CovarianceRegularizer`.

    Examples:
        >>> import keras
        >>> reg = DeCovRegularizer(1.0)
        >>> float(reg.penalty(keras.ops.convert_to_tensor(
        ...     [[0.0, 0.0], [2.0, -2.0]])))  # C = [[1, -1], [-1, 1]]
        1.0
    """

    ddof = 0

    def _from_centered(self, centered: Any, n: Any) -> Any:
        scatter = ops.matmul(ops.transpose(centered), centered)
        return self._from_covariance(scatter / ops.maximum(n, 1.0))

    def _from_covariance(self, cov: Any) -> Any:
        off_diagonal = ops.sum(ops.square(cov)) - ops.sum(ops.square(ops.diagonal(cov)))
        return 0.5 * off_diagonal


@keras.saving.register_keras_serializable(package="keras_covreg")
class ActivityL1Regularizer(_ActivityRegularizer):
    r"""L1 activity penalty, by default normalized by the number of activations.

    With ``reduction="mean"`` (default)

    $$\lambda \cdot \frac{1}{n} \sum_{k=1}^{n} |h_k|$$

    over all $n$ elements $h_k$ of the batch, so its scale depends neither on
    the layer's width nor on the batch size, on every Keras release (Keras's
    own ``L1`` returns a sum, which 3.14 and later divide by the batch size).
    This is our reading of the "L1" comparison in Kagebaeck & Mogren,
    Sections 3.2 and 3.4, which do not say how it was normalized.

    With ``reduction="sum"``

    $$\lambda \sum_{k=1}^{n} |h_k|,$$

    what an activity regularizer added to the loss in the Keras releases of
    the paper's time (Keras 2's ``l1(l)``, before 3.14 divided by the batch
    size): $n$ = batch size x features times the mean, so 8,400 times as
    strong for a batch of 100 and 84 units.

    Args:
        strength: a finite float >= 0.
        reduction: ``"mean"`` or ``"sum"``, as above.
        spatial_mode: ``"channels"`` (default) or ``"flatten"``; with either,
            every element of the output counts once.
        channel_axis: as in `CovarianceRegularizer`. Defaults to -1.

    Examples:
        >>> import keras
        >>> h = keras.ops.convert_to_tensor([[1.0, -3.0]])
        >>> float(ActivityL1Regularizer(0.5).penalty(h))
        1.0
        >>> float(ActivityL1Regularizer(0.5, reduction="sum").penalty(h))
        2.0
    """

    def __init__(self, strength: float, *, reduction: str = "mean",
                 spatial_mode: str = "channels", channel_axis: int = -1) -> None:
        super().__init__(strength, spatial_mode=spatial_mode, channel_axis=channel_axis)
        self.reduction = _validation.check_choice("reduction", reduction, L1_REDUCTIONS)

    def _penalty(self, h: Any, weights: Any) -> Any:
        n, column_sums = _count_and_sum(ops.abs(h), weights)
        total = ops.sum(column_sums)
        if self.reduction == "sum":
            return total
        count = n * ops.cast(_dim(h, -1), h.dtype)
        return total / ops.maximum(count, 1.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "reduction": self.reduction}
