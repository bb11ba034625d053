"""The NumPy metrics against the float64 reference and closed-form cases."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_covreg import metrics
from tests import reference

# name -> (function of activations, reference of C), one row per metric and basis.
REGISTRY = {
    "l_sigma": (metrics.l_sigma, reference.l_sigma),
    "cvr": (metrics.covariance_variance_ratio, reference.cvr),
    "mapc": (metrics.mean_abs_pearson, reference.mapc),
}
for _basis in metrics.BASES:
    REGISTRY |= {
        f"tdv2_{_basis}": (
            lambda x, b=_basis, **kw: metrics.top_d_variance_ratio(x, 2, basis=b, **kw),
            lambda c, b=_basis: reference.tdv(c, 2, b),
        ),
        f"ud90_{_basis}": (
            lambda x, b=_basis, **kw: metrics.utilized_dimensions(x, basis=b, **kw),
            lambda c, b=_basis: reference.ud(c, 0.9, b),
        ),
        f"effective_rank_{_basis}": (
            lambda x, b=_basis, **kw: metrics.effective_rank(x, basis=b, **kw),
            lambda c, b=_basis: reference.effective_rank(c, b),
        ),
        f"participation_ratio_{_basis}": (
            lambda x, b=_basis, **kw: metrics.participation_ratio(x, basis=b, **kw),
            lambda c, b=_basis: reference.participation_ratio(c, b),
        ),
    }
# Metrics that depend only on correlations, not on the scale of all units.
SCALE_INVARIANT = [k for k in REGISTRY if k != "l_sigma"]


def correlated(seed, n=200, p=5):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, p)) @ rng.normal(size=(p, p)) + rng.normal(size=p)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_matches_reference(name):
    fn, ref = REGISTRY[name]
    x = correlated(0, n=40)
    expected = ref(reference.covariance(x))
    np.testing.assert_allclose(fn(x), expected, rtol=1e-10)
    np.testing.assert_allclose(
        fn(np.cov(x, rowvar=False), from_covariance=True), expected, rtol=1e-10
    )


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_invariant_to_sample_order_and_unit_permutation(name):
    fn, _ = REGISTRY[name]
    x = correlated(1)
    rng = np.random.default_rng(2)
    shuffled = x[rng.permutation(len(x))][:, rng.permutation(x.shape[1])]
    np.testing.assert_allclose(fn(shuffled), fn(x), rtol=1e-9)


@pytest.mark.parametrize("name", SCALE_INVARIANT)
def test_invariant_to_scaling_all_units(name):
    fn, _ = REGISTRY[name]
    x = correlated(3)
    np.testing.assert_allclose(fn(x * 7.5), fn(x), rtol=1e-9)


def test_l_sigma_scales_quadratically():
    x = correlated(4)
    np.testing.assert_allclose(metrics.l_sigma(3 * x), 9 * metrics.l_sigma(x))


def test_independent_columns_at_large_n():
    x = np.random.default_rng(5).normal(size=(200_000, 6))
    # Sampling noise alone: CVR ~ 1 + (p - 1) sqrt(2 / (pi N)) (PAPER-NOTES).
    assert metrics.covariance_variance_ratio(x) < 1.02
    assert metrics.mean_abs_pearson(x) < 0.005


def test_duplicated_column_has_unit_correlation():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(500, 1))
    x = np.hstack([a, -3 * a])
    assert metrics.mean_abs_pearson(x) == pytest.approx(1.0)
    # |C| = [[1, 3], [3, 9]] * var: sum 16 over trace 10.
    assert metrics.covariance_variance_ratio(x) == pytest.approx(1.6)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_rank_k_data_uses_k_pca_dimensions(k):
    rng = np.random.default_rng(k)
    sources = rng.normal(size=(1000, k))
    sources /= sources.std(axis=0)
    x = sources @ rng.normal(size=(k, 8))
    assert metrics.utilized_dimensions(x, q=1.0, basis="pca") == k
    assert metrics.top_d_variance_ratio(x, k, basis="pca") == pytest.approx(1.0)


def test_identity_covariance_closed_forms():
    eye = np.eye(4)
    kw = {"from_covariance": True}
    assert metrics.l_sigma(eye, **kw) == pytest.approx(0.25)
    assert metrics.covariance_variance_ratio(eye, **kw) == 1.0
    assert metrics.mean_abs_pearson(eye, **kw) == 0.0
    assert metrics.utilized_dimensions(eye, q=0.9, **kw) == 4
    assert metrics.utilized_dimensions(eye, q=0.5, **kw) == 2
    assert metrics.top_d_variance_ratio(eye, 1, **kw) == 0.25
    assert metrics.effective_rank(eye, **kw) == pytest.approx(4.0)
    assert metrics.participation_ratio(eye, **kw) == pytest.approx(4.0)


def test_bases_differ_on_rotated_data():
    # Two equal-variance units that are perfectly correlated: one principal
    # component, two units.
    c = np.array([[1.0, 1.0], [1.0, 1.0]])
    assert metrics.utilized_dimensions(c, basis="pca", from_covariance=True) == 1
    assert metrics.utilized_dimensions(c, basis="unit", from_covariance=True) == 2


def test_mapc_leaves_out_zero_variance_units():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(100, 1))
    x = np.hstack([a, 2 * a, np.zeros((100, 1)), np.full((100, 1), 3.0)])
    assert metrics.mean_abs_pearson(x) == pytest.approx(1.0)


def test_mapc_with_fewer_than_two_active_units_is_nan_and_warns():
    x = np.hstack([np.arange(10.0)[:, None], np.ones((10, 2))])
    with pytest.warns(metrics.DegenerateActivationsWarning, match="fewer than two"):
        assert np.isnan(metrics.mean_abs_pearson(x))


def test_constant_activations_give_documented_results():
    x = np.ones((10, 3))
    for fn in (
        metrics.covariance_variance_ratio,
        metrics.effective_rank,
        metrics.participation_ratio,
        lambda v: metrics.top_d_variance_ratio(v, 1),
    ):
        with pytest.warns(metrics.DegenerateActivationsWarning):
            assert np.isnan(fn(x))
    with pytest.warns(metrics.DegenerateActivationsWarning):
        assert metrics.utilized_dimensions(x) == 0
    assert metrics.l_sigma(x) == 0.0


def test_summary_matches_individual_metrics_without_warnings():
    x = correlated(8)
    c = metrics.covariance(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = metrics.covariance_summary(c, d=2)
        metrics.covariance_summary(np.zeros((3, 3)), d=1)
    assert s["cvr"] == metrics.covariance_variance_ratio(x)
    assert s["ud90_unit"] == metrics.utilized_dimensions(x, basis="unit")
    assert s["tdv_pca"] == metrics.top_d_variance_ratio(x, 2)
    assert s["effective_rank"] == metrics.effective_rank(x)


@pytest.mark.parametrize("q, d", [(0.9, None), (0.75, 3)])
def test_one_eigendecomposition_and_one_check_per_summary(monkeypatch, q, d):
    x = correlated(8)
    c = metrics.covariance(x)
    calls = {"eigvalsh": 0, "as_covariance": 0}
    for module, name in ((np.linalg, "eigvalsh"), (metrics._validation, "as_covariance")):
        original = getattr(module, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
    summary, pca, unit = metrics.spectral_summary(c, d=d, q=q)
    assert calls == {"eigvalsh": 1, "as_covariance": 1}
    assert list(summary) == metrics.summary_names(q=q, with_tdv=d is not None)
    np.testing.assert_allclose(pca, np.sort(np.linalg.eigvalsh(c))[::-1], rtol=1e-12)
    np.testing.assert_array_equal(unit, np.sort(np.diag(c))[::-1])
    # Each value is the individual metric's, computed on its own.
    individual = {
        "l_sigma": metrics.l_sigma(x), "cvr": metrics.covariance_variance_ratio(x),
        "mapc": metrics.mean_abs_pearson(x),
        metrics.ud_name(q, "pca"): metrics.utilized_dimensions(x, q=q),
        metrics.ud_name(q, "unit"): metrics.utilized_dimensions(x, q=q, basis="unit"),
        "effective_rank": metrics.effective_rank(x),
        "participation_ratio": metrics.participation_ratio(x),
    }
    if d is not None:
        individual.update(tdv_pca=metrics.top_d_variance_ratio(x, d),
                          tdv_unit=metrics.top_d_variance_ratio(x, d, basis="unit"))
    assert summary == pytest.approx(individual, rel=1e-12)


def test_ud_names():
    assert metrics.ud_name() == "ud90_pca" and metrics.ud_name(0.5, "unit") == "ud50_unit"
    with pytest.raises(ValueError, match="basis"):
        metrics.ud_name(0.9, "units")
    with pytest.raises(ValueError, match="q=1.5"):
        metrics.ud_name(1.5)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: metrics.covariance(np.ones(5)), "Received: activations of shape"),
        (lambda: metrics.covariance(np.ones((1, 3))), "at least 2 samples"),
        (lambda: metrics.covariance([[1.0, np.nan], [2.0, 3.0]]), "1 NaN or inf"),
        (lambda: metrics.covariance([[1.0, np.inf], [2.0, 3.0]]), "NaN or inf"),
        (lambda: metrics.utilized_dimensions(np.eye(3), q=0), "Received: q=0"),
        (lambda: metrics.utilized_dimensions(np.eye(3), q=1.5), "Received: q=1.5"),
        (lambda: metrics.top_d_variance_ratio(np.eye(3), 0), "Received: d=0"),
        (lambda: metrics.top_d_variance_ratio(np.eye(3), 4), "Received: d=4"),
        (lambda: metrics.effective_rank(np.eye(3), basis="x"), "basis='x'"),
        (
            lambda: metrics.l_sigma(np.ones((2, 3)), from_covariance=True),
            "square matrix",
        ),
        (
            lambda: metrics.l_sigma([[1.0, 2.0], [0.0, 1.0]], from_covariance=True),
            "symmetric",
        ),
    ],
)
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_non_numeric_activations_are_a_type_error():
    with pytest.raises(TypeError, match="numeric"):
        metrics.covariance([["a", "b"], ["c", "d"]])


class TestStreamingCovariance:
    def test_agrees_with_numpy_cov_over_uneven_batches(self):
        rng = np.random.default_rng(9)
        x = rng.normal(loc=1e3, size=(1013, 7)) @ rng.normal(size=(7, 7))
        acc = metrics.StreamingCovariance()
        for start in range(0, len(x), 97):
            acc.update(x[start : start + 97])
        expected = np.cov(x, rowvar=False)
        assert acc.count == len(x)
        np.testing.assert_allclose(acc.covariance(), expected, rtol=1e-10, atol=0)
        np.testing.assert_allclose(acc.mean, x.mean(axis=0), rtol=1e-12)

    def test_merge_equals_single_pass(self):
        rng = np.random.default_rng(10)
        x = rng.normal(size=(300, 4))
        a = metrics.StreamingCovariance().update(x[:50]).update(x[50:120])
        b = metrics.StreamingCovariance().update(x[120:])
        a.merge(b).merge(metrics.StreamingCovariance())
        np.testing.assert_allclose(a.covariance(), np.cov(x, rowvar=False), rtol=1e-10)

    def test_single_sample_batches_and_empty_batches(self):
        x = np.arange(12.0).reshape(6, 2) ** 2
        acc = metrics.StreamingCovariance(n_features=2)
        for row in x:
            acc.update(row[None]).update(np.empty((0, 2)))
        np.testing.assert_allclose(acc.covariance(), np.cov(x, rowvar=False), rtol=1e-12)

    def test_errors(self):
        acc = metrics.StreamingCovariance()
        with pytest.raises(ValueError, match="count=0"):
            acc.covariance()
        acc.update(np.ones((3, 2)))
        with pytest.raises(ValueError, match=r"Received: batch of shape \(3, 5\)"):
            acc.update(np.ones((3, 5)))
        with pytest.raises(ValueError, match="NaN or inf"):
            acc.update(np.full((3, 2), np.nan))
        with pytest.raises(TypeError, match="Received: other of type int"):
            acc.merge(3)


finite = st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False)
activations = hnp.arrays(
    np.float64,
    st.tuples(st.integers(3, 12), st.integers(2, 5)),
    elements=finite,
)


@settings(max_examples=60, deadline=None)
@given(activations)
def test_property_bounds_and_reference(x):
    c = reference.covariance(x)
    p = x.shape[1]
    np.testing.assert_allclose(metrics.l_sigma(x), reference.l_sigma(c), rtol=1e-9, atol=1e-12)
    if np.trace(c) > 1e-6 * max(1.0, np.abs(x).max() ** 2):
        cvr = metrics.covariance_variance_ratio(x)
        assert 1 - 1e-9 <= cvr <= p + 1e-9
        np.testing.assert_allclose(cvr, reference.cvr(c), rtol=1e-7)
        for basis in metrics.BASES:
            assert 1 <= metrics.utilized_dimensions(x, basis=basis) <= p
            assert 1 - 1e-9 <= metrics.effective_rank(x, basis=basis) <= p + 1e-9
            assert 1 - 1e-9 <= metrics.participation_ratio(x, basis=basis) <= p + 1e-9


@settings(max_examples=40, deadline=None)
@given(activations, st.integers(1, 4))
def test_property_streaming_matches_numpy(x, chunks):
    acc = metrics.StreamingCovariance()
    for part in np.array_split(x, chunks):
        acc.update(part)
    expected = np.cov(x, rowvar=False)
    np.testing.assert_allclose(acc.covariance(), expected, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(expected).max()))


class TestSymmetryTolerance:
    """Covariances computed in float32 by a framework are accepted; asymmetric ones are not."""

    def covariance_from_float32(self, n=20_000, p=64, seed=0):
        """C of float32 activations, computed in float32 as a framework would,
        with C_ij and C_ji from different summation orders."""
        h = np.random.default_rng(seed).normal(size=(n, p)).astype(np.float32)
        centered = h - h.mean(axis=0)
        c = np.empty((p, p), np.float32)
        for i in range(p):
            c[i] = (centered[:, i : i + 1] * centered).sum(axis=0) / np.float32(n - 1)
            c[i, : i] = (centered[:, : i] * centered[:, i : i + 1])[::-1].sum(axis=0) / np.float32(n - 1)
        return c, h

    def test_float32_round_off_is_accepted_and_averaged_away(self):
        c, h = self.covariance_from_float32()
        assert np.max(np.abs(c - c.T)) > 1e-8 * np.max(np.abs(c))  # refused before
        expected = metrics.covariance_variance_ratio(h)
        got = metrics.covariance_variance_ratio(c, from_covariance=True)
        assert got == pytest.approx(expected, rel=1e-4)

    @pytest.mark.parametrize("dtype, relative", [(np.float32, 1e-2), (np.float64, 1e-6),
                                                  (np.float16, 0.2)])
    def test_a_truly_asymmetric_matrix_is_refused(self, dtype, relative):
        c = np.eye(3) + 0.5
        c[0, 1] += relative * 1.5
        with pytest.raises(ValueError, match="must be symmetric.*max \\|C - C\\^T\\|"):
            metrics.l_sigma(c.astype(dtype), from_covariance=True)

    def test_the_tolerance_follows_the_dtype(self):
        from keras_covreg import _validation

        assert _validation.symmetry_tolerance(np.float64) == pytest.approx(1.49e-8, rel=1e-2)
        assert _validation.symmetry_tolerance(np.float32) == pytest.approx(3.45e-4, rel=1e-2)
        assert _validation.symmetry_tolerance(np.int64) == _validation.symmetry_tolerance(np.float64)
