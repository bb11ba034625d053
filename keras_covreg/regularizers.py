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

import math

import keras
from keras import ops

from keras_covreg import _compat, _distribute, _validation

__all__ = ["ActivityL1Regularizer", "CovarianceRegularizer", "DeCovRegularizer"]

SPATIAL_MODES = ("channels", "flatten")


class _ActivityRegularizer(keras.regularizers.Regularizer):
    """Shared argument handling, dtype policy and batch-size compensation."""

    def __init__(self, strength, *, spatial_mode="channels", channel_axis=-1):
        self.strength = _validation.check_finite_nonnegative("strength", strength)
        self.spatial_mode = _validation.check_choice(
            "spatial_mode", spatial_mode, SPATIAL_MODES
        )
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, int):
            raise TypeError(
                f"`channel_axis` must be an integer. Received: "
                f"channel_axis={channel_axis!r}"
            )
        self.channel_axis = channel_axis
        # Run the probe now, eagerly, rather than inside a traced function.
        _compat.activity_loss_is_divided_by_batch_size()

    def __call__(self, x):
        """The value Keras expects from an activity regularizer for batch `x`.

        Keras >= 3.14 divides it by the batch size before adding it to the
        loss, so there it is ``penalty(x) * batch_size``; earlier releases add
        it as it is, so there it is ``penalty(x)``. Either way, the loss
        receives exactly ``penalty(x)``.
        """
        value = self.penalty(x)
        if _compat.activity_loss_is_divided_by_batch_size():
            value = value * ops.cast(ops.shape(x)[0], "float32")
        return value

    def penalty(self, x):
        """``strength`` times the penalty of batch `x`, a float32 scalar.

        Args:
            x: a layer's outputs, of shape (batch_size, ..., features), of a
                floating dtype.

        Raises:
            ValueError: if `x` has rank < 2 or unknown non-batch dimensions.
            TypeError: if `x` is not of a floating dtype.
        """
        return ops.multiply(self._penalty(self._observations(x)), self.strength)

    def _observations(self, x):
        """Casts `x` to float32 and reshapes it to (observations, features)."""
        dtype = keras.backend.standardize_dtype(x.dtype)
        if "float" not in dtype:
            raise TypeError(
                f"{type(self).__name__} needs floating activations. "
                f"Received: x of dtype {dtype}"
            )
        shape = tuple(x.shape)
        if len(shape) < 2:
            raise ValueError(
                f"{type(self).__name__} needs activations of rank >= 2, of shape "
                f"(batch_size, ..., features). Received: x of shape {shape}"
            )
        x = ops.cast(x, "float32")
        if len(shape) == 2:
            return x
        if self.spatial_mode == "channels":
            axis = self.channel_axis % len(shape)
            if axis == 0:
                raise ValueError(
                    "`channel_axis` cannot be the batch axis. "
                    f"Received: channel_axis={self.channel_axis}"
                )
            if axis != len(shape) - 1:
                x = ops.moveaxis(x, axis, -1)
            features = shape[axis]
        else:
            features = math.prod(shape[1:]) if None not in shape[1:] else None
        if features is None:
            raise ValueError(
                f"{type(self).__name__} needs the feature dimensions to be known. "
                f"Received: x of shape {shape}"
            )
        return ops.reshape(x, (-1, features))

    def _penalty(self, h):
        raise NotImplementedError

    def get_config(self):
        return {
            "strength": self.strength,
            "spatial_mode": self.spatial_mode,
            "channel_axis": self.channel_axis,
        }

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _centered(h):
    """Centered observations and the covariance denominator max(n - 1, 1)."""
    n = ops.cast(ops.shape(h)[0], "float32")
    centered = h - ops.mean(h, axis=0, keepdims=True)
    return centered, n


@ops.custom_gradient
def _covariance_l1_norm(h):
    """``sum_ij |C_ij|`` of h's sample covariance, with a one-product gradient.

    The gradient ``2 (H - 1 h_bar) sign(C) / (N - 1)`` needs one N x p x p
    product where automatic differentiation of ``Hc^T Hc`` spends two; its rows
    already sum to zero, so centering needs no separate gradient.
    """
    centered, n = _centered(h)
    denominator = ops.maximum(n - 1.0, 1.0)
    cov = ops.matmul(ops.transpose(centered), centered) / denominator
    value = ops.sum(ops.abs(cov))

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        scale = upstream * 2.0 / denominator
        return ops.matmul(centered, ops.sign(cov)) * scale

    return value, grad


class _CovarianceBasedRegularizer(_ActivityRegularizer):
    """Adds ``synchronized``: the covariance of the global batch across replicas."""

    # Denominator of the covariance: N - ddof.
    ddof = 1

    def __init__(self, strength, *, spatial_mode="channels", channel_axis=-1,
                 synchronized=False):
        super().__init__(strength, spatial_mode=spatial_mode, channel_axis=channel_axis)
        if not isinstance(synchronized, bool):
            raise TypeError(
                f"`synchronized` must be a bool. Received: synchronized={synchronized!r}"
            )
        self.synchronized = synchronized

    def _penalty(self, h):
        ctx = _distribute.replica_context() if self.synchronized else None
        if ctx is None:
            return self._local_penalty(h)
        # Two all-reduces, as BatchNormalization(synchronized=True) does, but
        # centering on the global mean before the second one so that float32
        # round-off does not grow with the mean: first (count, sum), then the
        # centered sum of outer products.
        n_local = ops.cast(ops.shape(h)[0], "float32")
        n, total = _distribute.all_reduce_sum(ctx, [n_local, ops.sum(h, axis=0)])
        centered = h - total / n
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
        return self._from_covariance(cov) * (replicas * n_local / n)

    def _local_penalty(self, h):
        raise NotImplementedError

    def _from_covariance(self, cov):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "synchronized": self.synchronized}


@keras.saving.register_keras_serializable(package="keras_covreg")
class CovarianceRegularizer(_CovarianceBasedRegularizer):
    """The covariance penalty L_Sigma of Kagebaeck & Mogren (eq. 1-2).

    For a batch of outputs H of shape (N, p) with sample covariance
    ``C = (H - 1 h_bar)^T (H - 1 h_bar) / (N - 1)``, the training loss receives

        strength * L_Sigma,   L_Sigma = sum_{i,j=1..p} |C_ij| / p^2,

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

    Example:
        >>> import keras
        >>> layer = keras.layers.Dense(
        ...     84, activity_regularizer=CovarianceRegularizer(0.08))
        >>> reg = CovarianceRegularizer(0.5)
        >>> float(reg.penalty(keras.ops.convert_to_tensor(
        ...     [[0.0, 0.0], [2.0, -2.0]])))  # C = [[2, -2], [-2, 2]]
        1.0
    """

    def _local_penalty(self, h):
        p = h.shape[-1]
        return _covariance_l1_norm(h) / float(p * p)

    def _from_covariance(self, cov):
        p = cov.shape[-1]
        return ops.sum(ops.abs(cov)) / float(p * p)


@keras.saving.register_keras_serializable(package="keras_covreg")
class DeCovRegularizer(_CovarianceBasedRegularizer):
    """DeCov, the penalty of Cogswell et al. (ICLR 2016, "Reducing overfitting
    in deep networks by decorrelating representations", eq. 1).

        strength * 1/2 (||C||_F^2 - ||diag(C)||_2^2),

    with, as in that paper, ``C = (H - 1 h_bar)^T (H - 1 h_bar) / N``. Only the
    off-diagonal covariances are penalized, and squared. Arguments as
    `CovarianceRegularizer`.

    Example:
        >>> import keras
        >>> reg = DeCovRegularizer(1.0)
        >>> float(reg.penalty(keras.ops.convert_to_tensor(
        ...     [[0.0, 0.0], [2.0, -2.0]])))  # C = [[1, -1], [-1, 1]]
        1.0
    """

    ddof = 0

    def _local_penalty(self, h):
        centered, n = _centered(h)
        return self._from_covariance(ops.matmul(ops.transpose(centered), centered) / n)

    def _from_covariance(self, cov):
        off_diagonal = ops.sum(ops.square(cov)) - ops.sum(ops.square(ops.diagonal(cov)))
        return 0.5 * off_diagonal


@keras.saving.register_keras_serializable(package="keras_covreg")
class ActivityL1Regularizer(_ActivityRegularizer):
    """L1 activity penalty normalized by the number of activations.

        strength * mean(|h|)   over every element of the batch,

    so its scale depends neither on the layer's width nor on the batch size,
    on every Keras release (Keras's own ``L1`` returns a sum, which 3.14 and
    later divide by the batch size). This is our reading of the "L1"
    comparison in Kagebaeck & Mogren, Sections 3.2 and 3.4, which do not say
    how it was normalized.

    Args:
        strength: a finite float >= 0.

    Example:
        >>> import keras
        >>> reg = ActivityL1Regularizer(0.5)
        >>> float(reg.penalty(keras.ops.convert_to_tensor([[1.0, -3.0]])))
        1.0
    """

    def __init__(self, strength):
        super().__init__(strength)

    def _observations(self, x):
        return ops.reshape(super()._observations(x), (-1,))

    def _penalty(self, h):
        return ops.mean(ops.abs(h))

    def get_config(self):
        return {"strength": self.strength}
