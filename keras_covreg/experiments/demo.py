"""A one-minute demonstration: the same linear autoencoder with and without L_Sigma."""

from keras_covreg.experiments import data


def run_demo(*, strength=0.3, epochs=50, n_samples=2000, seed=0, out=print):
    """Trains the Section 3.2 autoencoder twice and prints the code's metrics.

    Returns:
        A dict from "none" and "l_sigma" to `metrics.covariance_summary` dicts
        (with ``d=4``) plus the reconstruction ``mse``.
    """
    import keras

    from keras_covreg.experiments import models
    from keras_covreg.probe import measure
    from keras_covreg.regularizers import CovarianceRegularizer

    x, _ = data.projected_sources(n_samples, 20, seed=seed)
    out(
        f"4 independent Gaussian sources projected to 20 dimensions, {n_samples} "
        f"samples; linear autoencoder with a 10-unit code; Adam, {epochs} epochs."
    )
    results = {}
    for name, reg in (("none", None), ("l_sigma", CovarianceRegularizer(strength))):
        keras.utils.set_random_seed(seed)
        model = models.linear_autoencoder(20, code_regularizer=reg)
        model.compile(keras.optimizers.Adam(0.01), "mse")
        model.fit(x, x, batch_size=100, epochs=epochs, verbose=0)
        summary = measure(model, x, "code", max_samples=len(x))["code"].summary(d=4)
        reconstruction = keras.ops.convert_to_numpy(model(x, training=False))
        summary["mse"] = float(((reconstruction - x) ** 2).mean())
        results[name] = summary
    label = f"L_Sigma (lambda={strength})"
    out(f"\nmetrics of the code over all {n_samples} samples:")
    out(f"{'':>22}{'none':>12}{label:>22}")
    for key in ("mse", "cvr", "mapc", "tdv_pca", "ud90_unit", "ud90_pca", "effective_rank"):
        out(f"{key:>22}{results['none'][key]:>12.4g}{results['l_sigma'][key]:>22.4g}")
    return results
