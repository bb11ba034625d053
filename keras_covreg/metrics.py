"""Metrics of a layer's activations, from Kagebaeck & Mogren, Section 3.1.

Pure NumPy, computed in float64. Every metric takes either activations of shape
(n_samples, n_features) or, with ``from_covariance=True``, their covariance
matrix of shape (n_features, n_features): a caller that accumulated the
covariance with `StreamingCovariance` never needs to hold the samples.

Notation: ``H`` is the (N, p) activation matrix, ``C`` its sample covariance
(denominator N - 1), ``lambda_1 >= ... >= lambda_p`` the spectrum of the chosen
*basis*:

* ``basis="pca"``: the eigenvalues of C (variance along principal components);
* ``basis="unit"``: the diagonal of C (variance of each unit, in the layer's own
  coordinates), sorted in decreasing order.

The paper does not say which basis its "dimensions" are; every spectral metric
here takes both and defaults to ``"pca"``.

Degenerate input (every unit constant, so the total variance is 0) is not an
error: the ratio metrics return NaN and `DegenerateActivationsWarning` is
issued; `utilized_dimensions` returns 0.
"""

import math
import warnings

import numpy as np
from numpy.typing import ArrayLike

from keras_covreg import _validation

__all__ = [
    "DegenerateActivationsWarning",
    "StreamingCovariance",
    "correlation_matrix",
    "covariance",
    "covariance_summary",
    "covariance_variance_ratio",
    "effective_rank",
    "l_sigma",
    "mean_abs_pearson",
    "participation_ratio",
    "spectral_summary",
    "spectrum",
    "summary_names",
    "switched_off_units",
    "top_d_variance_ratio",
    "ud_name",
    "utilized_dimensions",
]

BASES = ("pca", "unit")

# A unit whose variance is below this fraction of the largest unit variance is
# treated as having zero variance by `mean_abs_pearson`. Units that L_Sigma
# switches off keep a variance of order float32 round-off (~1e-7 relative)
# squared, far below this.
ZERO_VARIANCE_RTOL = 1e-12

# Relative slack when comparing a cumulative variance to q * total, so that
# rank-k data gives exactly k despite round-off in the trailing eigenvalues.
CUMULATIVE_RTOL = 1e-10


class DegenerateActivationsWarning(UserWarning):
    """Issued when a metric is undefined for the activations given to it."""


def covariance(activations: ArrayLike) -> np.ndarray:
    r"""Sample covariance of activations, float64 (paper, Section 2.1).

    $$C = \frac{1}{N - 1} (H - \mathbf{1}\bar{h})^\top (H - \mathbf{1}\bar{h})$$

    Args:
        activations: array of shape (n_samples, n_features), n_samples >= 2.

    Returns:
        Array of shape (n_features, n_features).

    Raises:
        ValueError: if `activations` is not 2-D, has fewer than 2 samples or
            holds NaN or inf.

    Examples:
        >>> covariance([[0.0, 1.0], [2.0, 3.0]]).tolist()
        [[2.0, 2.0], [2.0, 2.0]]
    """
    h = _validation.as_activations("activations", activations)
    centered = h - h.mean(axis=0)
    return centered.T @ centered / (h.shape[0] - 1)


def _covariance_of(activations: ArrayLike, from_covariance: bool) -> np.ndarray:
    if from_covariance:
        return _validation.as_covariance("activations", activations)
    return covariance(activations)


def _warn_degenerate(metric: str) -> None:
    warnings.warn(
        f"{metric} is undefined: the total variance of the activations is 0 "
        "(every unit is constant). Returning NaN.",
        DegenerateActivationsWarning,
        stacklevel=3,
    )


def spectrum(activations: ArrayLike, *, basis: str = "pca",
             from_covariance: bool = False) -> np.ndarray:
    """Variances of the activations along the chosen basis, largest first.

    Args:
        activations: array of shape (n_samples, n_features), or of shape
            (n_features, n_features) with ``from_covariance=True``.
        basis: ``"pca"`` for the eigenvalues of C (negative round-off clipped
            to 0), ``"unit"`` for its diagonal.
        from_covariance: whether `activations` is already a covariance matrix.

    Returns:
        Array of shape (n_features,), sorted in decreasing order.

    Examples:
        >>> spectrum([[4.0, 0.0], [0.0, 1.0]], basis="unit",
        ...          from_covariance=True).tolist()
        [4.0, 1.0]
    """
    _validation.check_choice("basis", basis, BASES)
    return _spectrum_of(_covariance_of(activations, from_covariance), basis)


# -- The metrics' cores: pure functions of a checked covariance matrix or of a
# sorted spectrum; NaN (or 0 for UD) where a metric is undefined, no warnings.


def _spectrum_of(c: np.ndarray, basis: str) -> np.ndarray:
    values = np.diag(c).copy() if basis == "unit" else np.linalg.eigvalsh(c)
    return np.sort(np.clip(values, 0.0, None))[::-1]


def _l_sigma_of(abs_c: np.ndarray) -> float:
    return float(abs_c.sum() / abs_c.shape[0] ** 2)


def _cvr_of(abs_c: np.ndarray) -> float:
    # tr |C| = tr C: the diagonal of a covariance is >= 0.
    trace = float(np.trace(abs_c))
    return float(abs_c.sum() / trace) if trace > 0 else math.nan


def _active_units(c: np.ndarray) -> np.ndarray:
    variances = np.diag(c)
    return (variances > ZERO_VARIANCE_RTOL * max(variances.max(), 0.0)) & (variances > 0)


def _mapc_of(c: np.ndarray, abs_c: np.ndarray) -> float:
    active = _active_units(c)
    k = int(active.sum())
    if k < 2:
        return math.nan
    inverse_std = 1.0 / np.sqrt(np.diag(c)[active])
    corr = abs_c if active.all() else abs_c[np.ix_(active, active)]
    corr = corr * inverse_std[:, None]
    corr *= inverse_std[None, :]
    np.minimum(corr, 1.0, out=corr)  # round-off can put |r| a hair above 1
    # The mean over pairs i < j: C is symmetric, so the off-diagonal sum
    # counts each pair twice.
    return float((corr.sum() - np.trace(corr)) / (k * k - k))


def _tdv_of(values: np.ndarray, d: int) -> float:
    total = values.sum()
    return float(values[:d].sum() / total) if total > 0 else math.nan


def _ud_of(values: np.ndarray, q: float) -> int:
    total = values.sum()
    if total <= 0:
        return 0
    target = q * total * (1.0 - CUMULATIVE_RTOL)
    return int(min(np.searchsorted(np.cumsum(values), target) + 1, values.size))


def _effective_rank_of(values: np.ndarray) -> float:
    total = values.sum()
    if total <= 0:
        return math.nan
    w = values / total
    w = w[w > 0]
    return float(np.exp(-np.sum(w * np.log(w))))


def _participation_ratio_of(values: np.ndarray) -> float:
    total = values.sum()
    return float(total**2 / np.sum(values**2)) if total > 0 else math.nan


def l_sigma(activations: ArrayLike, *, from_covariance: bool = False) -> float:
    r"""The paper's covariance penalty L_Sigma (eq. 1-2). Lower is less correlated.

    $$L_\Sigma = \frac{1}{p^2} \sum_{i,j=1}^{p} |C_{ij}| \qquad \text{(eq. 1-2)}$$

    the diagonal included.

    Args:
        activations: array of shape (n_samples, n_features), or of shape
            (n_features, n_features) with ``from_covariance=True``.
        from_covariance: whether `activations` is already a covariance matrix.

    Returns:
        A float >= 0.

    Examples:
        >>> l_sigma([[1.0, -0.5], [-0.5, 1.0]], from_covariance=True)
        0.75
    """
    return _l_sigma_of(np.abs(_covariance_of(activations, from_covariance)))


def covariance_variance_ratio(activations: ArrayLike, *,
                              from_covariance: bool = False) -> float:
    r"""Covariance/variance ratio, CVR (Section 3.1). Lower is better; 1 is ideal.

    $$\mathrm{CVR} = \frac{\sum_{i,j=1}^{p} |C_{ij}|}{\operatorname{tr}(C)} \in [1, p]$$

    The paper's formula (Section 3.1, unnumbered) carries an extra $1/p^2$
    that its stated optimum of 1 and Table 1's 20.00 for an 84-unit code rule
    out; the form above allows both. Sampling noise alone gives about
    $1 + (p - 1)\sqrt{2 / (\pi N)}$ for independent units, so compare
    values at equal N.

    Args:
        activations: array of shape (n_samples, n_features), or of shape
            (n_features, n_features) with ``from_covariance=True``.
        from_covariance: whether `activations` is already a covariance matrix.

    Returns:
        A float in [1, p], or NaN (with `DegenerateActivationsWarning`) when
        every unit is constant.

    Examples:
        >>> covariance_variance_ratio([[1.0, 0.5], [0.5, 1.0]],
        ...                           from_covariance=True)
        1.5
    """
    value = _cvr_of(np.abs(_covariance_of(activations, from_covariance)))
    if math.isnan(value):
        _warn_degenerate("covariance_variance_ratio")
    return value


def mean_abs_pearson(activations: ArrayLike, *, from_covariance: bool = False) -> float:
    r"""Mean absolute Pearson correlation, MAPC (Section 3.1). Lower is better.

    $$\mathrm{MAPC} = \frac{2}{p^2 - p} \sum_{i<j} \frac{|C_{ij}|}{\sqrt{C_{ii} C_{jj}}} \in [0, 1]$$


    Pairs that involve a unit of zero variance (below ``ZERO_VARIANCE_RTOL``
    times the largest variance) have no correlation and are left out of the
    mean. L_Sigma switches units off on purpose, so this is the common case,
    not an error.

    Args:
        activations: array of shape (n_samples, n_features), or of shape
            (n_features, n_features) with ``from_covariance=True``.
        from_covariance: whether `activations` is already a covariance matrix.

    Returns:
        A float in [0, 1], or NaN (with `DegenerateActivationsWarning`) when
        fewer than two units vary, so that no pair is left.

    Examples:
        >>> mean_abs_pearson([[1.0, -0.5], [-0.5, 1.0]], from_covariance=True)
        0.5
    """
    c = _covariance_of(activations, from_covariance)
    value = _mapc_of(c, np.abs(c))
    if math.isnan(value):
        warnings.warn(
            "mean_abs_pearson is undefined: fewer than two units have non-zero "
            f"variance ({int(_active_units(c).sum())} of {c.shape[0]}). Returning NaN.",
            DegenerateActivationsWarning,
            stacklevel=2,
        )
    return value


def top_d_variance_ratio(activations: ArrayLike, d: int, *, basis: str = "pca",
                         from_covariance: bool = False) -> float:
    r"""Top-d variance over total variance, TdV (Section 3.1). Higher is better.

    $$\mathrm{TdV} = \frac{\sum_{k=1}^{d} \lambda_k}{\sum_{k=1}^{p} \lambda_k} \in [0, 1]$$

    with $\lambda_1 \ge \dots \ge \lambda_p$ the spectrum of the basis; with d the true
    dimension of the data, 1 means the representation uses no more than d
    dimensions.

    Args:
        activations: array of shape (n_samples, n_features), or of shape
            (n_features, n_features) with ``from_covariance=True``.
        d: integer in [1, n_features].
        basis: ``"pca"`` or ``"unit"`` (see the module docstring).
        from_covariance: whether `activations` is already a covariance matrix.

    Returns:
        A float in [0, 1], or NaN (with `DegenerateActivationsWarning`) when
        every unit is constant.

    Examples:
        >>> top_d_variance_ratio([[3.0, 0.0], [0.0, 1.0]], 1, basis="unit",
        ...                      from_covariance=True)
        0.75
    """
    values = spectrum(activations, basis=basis, from_covariance=from_covariance)
    d = _validation.check_int_in_range("d", d, 1, values.size)
    value = _tdv_of(values, d)
    if math.isnan(value):
        _warn_degenerate("top_d_variance_ratio")
    return value


def utilized_dimensions(activations: ArrayLike, *, q: float = 0.9, basis: str = "pca",
                        from_covariance: bool = False) -> int:
    r"""Utilized dimensions, UD_q (Section 3.1). Lower means a more compact code.

    The fewest dimensions of the basis whose variances add up to at least a
    fraction q of the total variance (UD_90 for q = 0.9):

    $$\mathrm{UD}_q = \min \Big\{ k : \sum_{i=1}^{k} \lambda_i \ge q \sum_{i=1}^{p} \lambda_i \Big\}$$

    Args:
        activations: array of shape (n_samples, n_features), or of shape
            (n_features, n_features) with ``from_covariance=True``.
        q: fraction of the variance to retain, in (0, 1]. Defaults to 0.9.
        basis: ``"pca"`` or ``"unit"`` (see the module docstring).
        from_covariance: whether `activations` is already a covariance matrix.

    Returns:
        An int in [1, p]; 0 (with `DegenerateActivationsWarning`) when every
        unit is constant, since no dimension is needed to hold no variance.

    Examples:
        >>> utilized_dimensions([[9.0, 0.0], [0.0, 1.0]], basis="unit",
        ...                     from_covariance=True)
        1
    """
    q = _validation.check_fraction("q", q)
    values = spectrum(activations, basis=basis, from_covariance=from_covariance)
    if values.sum() <= 0:
        warnings.warn(
            "utilized_dimensions: the total variance is 0 (every unit is "
            "constant). Returning 0.",
            DegenerateActivationsWarning,
            stacklevel=2,
        )
    return _ud_of(values, q)


def effective_rank(activations: ArrayLike, *, basis: str = "pca",
                   from_covariance: bool = False) -> float:
    r"""Effective rank (Roy & Vetterli, 2007). Lower means a more compact code.

    $$\operatorname{erank} = \exp\Big(-\sum_{k} w_k \log w_k\Big), \qquad w_k = \frac{\lambda_k}{\sum_j \lambda_j}$$

    the
    exponential of the entropy of the normalized spectrum, in [1, p]; p for a
    flat spectrum, 1 when one dimension holds all the variance.

    Args:
        activations: array of shape (n_samples, n_features), or of shape
            (n_features, n_features) with ``from_covariance=True``.
        basis: ``"pca"`` or ``"unit"`` (see the module docstring).
        from_covariance: whether `activations` is already a covariance matrix.

    Returns:
        A float in [1, p], or NaN (with `DegenerateActivationsWarning`) when
        every unit is constant.

    Examples:
        >>> effective_rank([[2.0, 0.0], [0.0, 2.0]], from_covariance=True)
        2.0
    """
    value = _effective_rank_of(
        spectrum(activations, basis=basis, from_covariance=from_covariance))
    if math.isnan(value):
        _warn_degenerate("effective_rank")
    return value


def participation_ratio(activations: ArrayLike, *, basis: str = "pca",
                        from_covariance: bool = False) -> float:
    r"""Participation ratio. Lower means a more compact code.

    $$\mathrm{PR} = \frac{\big(\sum_k \lambda_k\big)^2}{\sum_k \lambda_k^2} \in [1, p]$$

    (Gao et al., 2017,
    "A theory of multineuronal dimensionality, dynamics and measurement").

    Args:
        activations: array of shape (n_samples, n_features), or of shape
            (n_features, n_features) with ``from_covariance=True``.
        basis: ``"pca"`` or ``"unit"`` (see the module docstring).
        from_covariance: whether `activations` is already a covariance matrix.

    Returns:
        A float in [1, p], or NaN (with `DegenerateActivationsWarning`) when
        every unit is constant.

    Examples:
        >>> participation_ratio([[3.0, 0.0], [0.0, 1.0]], from_covariance=True)
        1.6
    """
    value = _participation_ratio_of(
        spectrum(activations, basis=basis, from_covariance=from_covariance))
    if math.isnan(value):
        _warn_degenerate("participation_ratio")
    return value


def correlation_matrix(cov: np.ndarray) -> np.ndarray:
    """Pearson correlations of a covariance matrix; NaN where a unit has zero variance.

    ``R[i, j] = C[i, j] / sqrt(C[i, i] C[j, j])``, of shape (p, p), no checks
    (for matrices this package computed itself).

    Examples:
        >>> correlation_matrix(np.array([[4.0, 1.0, 0.0], [1.0, 1.0, 0.0],
        ...                              [0.0, 0.0, 0.0]])).round(2).tolist()
        [[1.0, 0.5, nan], [0.5, 1.0, nan], [nan, nan, nan]]
    """
    std = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / np.outer(std, std)
    active = std > 0
    corr[~active, :] = np.nan
    corr[:, ~active] = np.nan
    return corr


# The default of `switched_off_units`: the XOR experiment's active fraction.
SWITCHED_OFF_FRACTION = 0.01


def switched_off_units(cov: ArrayLike, *, threshold: float = SWITCHED_OFF_FRACTION
                       ) -> np.ndarray:
    """The units a penalty has switched off: variance below a share of the largest.

    Unit i is switched off when ``C[i, i] < threshold * max_j C[j, j]``, or
    when its variance is 0. Relative, so that it does not depend on the
    layer's scale: the paper's units are "switched off" when they no longer
    vary (Sections 1 and 3.3), and a penalized code shrinks as a whole while
    it trains.

    Args:
        cov: a covariance matrix of shape (p, p).
        threshold: the share of the largest unit variance, in [0, 1].
            Defaults to 0.01 (1%, as the XOR experiment's ``--active-fraction``).

    Returns:
        The indices of the switched-off units, ascending, an int64 array of
        shape (k,); every unit when all variances are 0.

    Raises:
        ValueError: for a `cov` that is not a covariance matrix, or a
            `threshold` outside [0, 1].

    Examples:
        >>> switched_off_units([[4.0, 0.0, 0.0], [0.0, 1e-4, 0.0], [0.0, 0.0, 0.5]])
        array([1])
    """
    c = _validation.as_covariance("cov", cov)
    threshold = _validation.check_finite_nonnegative("threshold", threshold)
    if threshold > 1:
        raise ValueError(f"`threshold` must be in [0, 1]. Received: threshold={threshold!r}")
    variances = np.diag(c)
    off = (variances < threshold * variances.max()) | (variances <= 0)
    return np.flatnonzero(off).astype(np.int64)


def ud_name(q: float = 0.9, basis: str = "pca") -> str:
    """The name of UD_q on a basis, as used across the package: ``ud90_pca``.

    The same name is the key in `covariance_summary`, the monitor's
    TensorBoard tag (``<layer>/ud90_pca``) and epoch-log key
    (``val_<layer>_ud90_pca``), and the experiments' result column.

    Args:
        q: fraction of the variance, in (0, 1]; named by its rounded percent.
        basis: ``"pca"`` or ``"unit"``.

    Returns:
        ``f"ud{round(100 q)}_{basis}"``.

    Raises:
        ValueError: for a `q` outside (0, 1] or an unknown `basis`.

    Examples:
        >>> ud_name(0.9, "unit")
        'ud90_unit'
    """
    q = _validation.check_fraction("q", q)
    _validation.check_choice("basis", basis, BASES)
    return f"ud{round(q * 100)}_{basis}"


def summary_names(*, q: float = 0.9, with_tdv: bool = False) -> list[str]:
    """The keys of `covariance_summary`, in its order.

    Args:
        q: the fraction of variance of UD. Defaults to 0.9.
        with_tdv: whether the summary has TdV (it does when given `d`).

    Returns:
        ``["l_sigma", "cvr", "mapc", "ud90_pca", "ud90_unit",
        "effective_rank", "participation_ratio"]`` for q = 0.9, then
        ``"tdv_pca", "tdv_unit"`` with TdV.

    Examples:
        >>> summary_names(q=0.8)[3:5]
        ['ud80_pca', 'ud80_unit']
    """
    names = ["l_sigma", "cvr", "mapc", ud_name(q, "pca"), ud_name(q, "unit"),
             "effective_rank", "participation_ratio"]
    return names + ["tdv_pca", "tdv_unit"] if with_tdv else names


def spectral_summary(cov: ArrayLike, *, d: int | None = None,
                     q: float = 0.9) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Every metric of this module and both spectra, from one covariance matrix.

    Checks `cov` once and eigendecomposes it once (``numpy.linalg.eigvalsh``,
    O(p^3) time, O(p^2) memory); every other metric costs O(p^2). This is
    what `covariance_summary` and the monitor use.

    Args:
        cov: covariance matrix of shape (n_features, n_features).
        d: the true dimension of the data, in [1, n_features], for TdV;
            omitted when None.
        q: fraction of variance for UD, in (0, 1]. Defaults to 0.9.

    Returns:
        ``(summary, pca, unit)``: the dict of `covariance_summary`, and the
        spectra on the PCA and unit bases, each of shape (n_features,),
        largest first.

    Raises:
        ValueError: for a `cov` that is not a finite, symmetric, square
            matrix with a non-negative diagonal, or a bad `d` or `q`.

    Examples:
        >>> summary, pca, unit = spectral_summary([[2.0, 0.0], [0.0, 1.0]])
        >>> summary["ud90_pca"], pca.tolist(), unit.tolist()
        (2.0, [2.0, 1.0], [2.0, 1.0])
    """
    c = _validation.as_covariance("cov", cov)
    q = _validation.check_fraction("q", q)
    if d is not None:
        d = _validation.check_int_in_range("d", d, 1, c.shape[0])
    pca, unit = _spectrum_of(c, "pca"), _spectrum_of(c, "unit")
    abs_c = np.abs(c)
    values = [_l_sigma_of(abs_c), _cvr_of(abs_c), _mapc_of(c, abs_c), float(_ud_of(pca, q)),
              float(_ud_of(unit, q)), _effective_rank_of(pca), _participation_ratio_of(pca)]
    if d is not None:
        values += [_tdv_of(pca, d), _tdv_of(unit, d)]
    return dict(zip(summary_names(q=q, with_tdv=d is not None), values)), pca, unit


def covariance_summary(cov: ArrayLike, *, d: int | None = None,
                       q: float = 0.9) -> dict[str, float]:
    """Every metric of this module, from one covariance matrix.

    One check of `cov` and one eigendecomposition (see `spectral_summary`).

    Args:
        cov: covariance matrix of shape (n_features, n_features).
        d: the true dimension of the data, for TdV; omitted when None.
        q: fraction of variance for UD. Defaults to 0.9.

    Returns:
        A dict of floats with the keys of `summary_names`: ``l_sigma``,
        ``cvr``, ``mapc``, ``ud90_pca``, ``ud90_unit`` (for q = 0.9),
        ``effective_rank``, ``participation_ratio`` and, when `d` is given,
        ``tdv_pca`` and ``tdv_unit``. Undefined values are NaN (UD: 0),
        without warnings.

    Raises:
        ValueError: as `spectral_summary`.

    Examples:
        >>> s = covariance_summary([[1.0, 0.0], [0.0, 1.0]], d=1)
        >>> s["cvr"], s["ud90_unit"], s["tdv_pca"]
        (1.0, 2.0, 0.5)
    """
    return spectral_summary(cov, d=d, q=q)[0]


class StreamingCovariance:
    """Exact, mergeable float64 accumulator of a sample covariance.

    Keeps the count, the mean and the centered sum of outer products M2, and
    folds in each batch with the pairwise update of Chan, Golub & LeVeque
    (1979, "Updating formulae and a pairwise algorithm for computing sample
    variances"): memory is O(p^2) whatever the number of samples, and the
    result equals ``numpy.cov(all_samples, rowvar=False)`` to round-off.

    Args:
        n_features: the number of features, or None to take it from the first
            batch.

    Examples:
        >>> acc = StreamingCovariance()
        >>> acc.update([[0.0, 1.0]]).update([[2.0, 3.0]])
        StreamingCovariance(count=2, n_features=2)
        >>> acc.covariance().round(12).tolist()  # equal to round-off
        [[2.0, 2.0], [2.0, 2.0]]
    """

    def __init__(self, n_features: int | None = None) -> None:
        if n_features is not None:
            _validation.check_int_in_range("n_features", n_features, 1, 2**31)
        self.n_features = n_features
        self.count = 0
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"StreamingCovariance(count={self.count}, n_features={self.n_features})"

    def update(self, batch: ArrayLike) -> "StreamingCovariance":
        """Adds a batch of shape (n_samples, n_features); returns self.

        Raises:
            ValueError: if `batch` is not 2-D, has the wrong number of features
                or holds NaN or inf.
        """
        h = _validation.as_activations("batch", batch, min_samples=0, check_finite=False)
        if self.n_features is None:
            self.n_features = h.shape[1]
        if h.shape[1] != self.n_features:
            raise ValueError(
                f"`batch` must have {self.n_features} features, like the batches "
                f"before it. Received: batch of shape {h.shape}"
            )
        if h.shape[0] == 0:
            return self
        mean = h.mean(axis=0)
        # NaN and inf reach the column means, so checking p means instead of
        # N x p values saves a pass over the batch.
        if not np.isfinite(mean).all():
            _validation.raise_non_finite("batch", h)
        n_b = h.shape[0]
        if self._mean is None or self._m2 is None:
            centered = h - mean
            self.count, self._mean, self._m2 = n_b, mean, centered.T @ centered
            return self
        # Chan et al.'s update adds M2 of the batch and (n_a n_b / n) d d^T,
        # d the difference of the means. The second term enters the same
        # product as one more row, sqrt(n_a n_b / n) d: one Gram matrix per
        # batch and no p x p temporaries (a third of the time at p = 1,024).
        n = self.count + n_b
        delta = mean - self._mean
        rows = np.empty((n_b + 1, h.shape[1]))
        np.subtract(h, mean, out=rows[:-1])
        np.multiply(delta, math.sqrt(self.count * n_b / n), out=rows[-1])
        self._m2 += rows.T @ rows
        self._mean += delta * (n_b / n)
        self.count = n
        return self

    def merge(self, other: "StreamingCovariance") -> "StreamingCovariance":
        """Folds another accumulator (e.g. another worker's) in; returns self."""
        if not isinstance(other, StreamingCovariance):
            raise TypeError(
                "`other` must be a StreamingCovariance. "
                f"Received: other of type {type(other).__name__}"
            )
        if other.count == 0:
            return self
        if self.n_features is not None and other.n_features != self.n_features:
            raise ValueError(
                f"`other` must have {self.n_features} features. "
                f"Received: other with n_features={other.n_features}"
            )
        self.n_features = other.n_features
        if other._mean is not None and other._m2 is not None:
            self._merge(other.count, other._mean, other._m2)
        return self

    def state(self) -> tuple[int, np.ndarray, np.ndarray]:
        """``(count, mean, M2)``: what another process needs to `merge` this.

        Mean of shape (p,), M2 (the centred sum of outer products) of shape
        (p, p); zeros when no samples were added. Raises `ValueError` if the
        number of features is not known yet.
        """
        if self.n_features is None:
            raise ValueError("StreamingCovariance.state: the number of features is not "
                             "known before the first batch. Received: n_features=None")
        if self._mean is None or self._m2 is None:
            p = self.n_features
            return 0, np.zeros(p), np.zeros((p, p))
        return self.count, self._mean.copy(), self._m2.copy()

    @classmethod
    def from_state(cls, count: int, mean: ArrayLike, m2: ArrayLike) -> "StreamingCovariance":
        """The accumulator whose `state` is ``(count, mean, M2)``.

        Examples:
            >>> a = StreamingCovariance().update([[0.0], [2.0]])
            >>> b = StreamingCovariance.from_state(*a.state())
            >>> b.merge(a).covariance().tolist()  # [0, 2, 0, 2]
            [[1.3333333333333333]]
        """
        mean = np.array(mean, dtype=np.float64)
        acc = cls(len(mean))
        if count > 0:
            acc.count, acc._mean = int(count), mean
            acc._m2 = np.array(m2, dtype=np.float64).reshape(len(mean), len(mean))
        return acc

    def _merge(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        if self._mean is None or self._m2 is None:
            self.count, self._mean, self._m2 = n_b, mean_b.copy(), m2_b.copy()
            return
        n_a = self.count
        n = n_a + n_b
        delta = mean_b - self._mean
        self._m2 += m2_b
        self._m2 += np.outer(delta, delta) * (n_a * n_b / n)
        self._mean += delta * (n_b / n)
        self.count = n

    @property
    def mean(self) -> np.ndarray:
        """The mean of the samples so far, of shape (n_features,)."""
        if self._mean is None:
            raise ValueError("StreamingCovariance.mean: no samples have been added.")
        return self._mean.copy()

    def covariance(self) -> np.ndarray:
        """Sample covariance (denominator N - 1), of shape (p, p).

        Raises:
            ValueError: if fewer than 2 samples were added.
        """
        if self._m2 is None or self.count < 2:
            raise ValueError(
                "StreamingCovariance needs at least 2 samples for a covariance. "
                f"Received: count={self.count}"
            )
        return self._m2 / (self.count - 1)
