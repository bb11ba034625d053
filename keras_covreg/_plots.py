"""Figures of a covariance matrix: heatmaps and spectra, as RGB arrays or PNGs.

Uses matplotlib's object-oriented API with the Agg canvas (no pyplot, no global
state), imported here only, so `import keras_covreg` does not import it.
"""

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Figure size in inches at DPI: 4.8 x 4 inches at 80 dpi is 384 x 320 pixels,
# large enough for unit indices up to p ~ 100, small enough for event files.
FIGSIZE = (4.8, 4.0)
DPI = 80


def _tick_step(p):
    """A step between unit-index labels that keeps them readable."""
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500):
        if p / step <= 12:
            return step
    return max(1, p // 10)


def _new_figure():
    # Fixed margins rather than a layout engine: the figures are drawn every
    # epoch, and constrained layout doubles the drawing time.
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    fig.subplots_adjust(left=0.14, right=0.95, bottom=0.13, top=0.9)
    FigureCanvasAgg(fig)
    return fig


def to_png(fig):
    """Renders a figure to PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def matrix_figure(matrix, *, title, label, limit=None):
    """A heatmap of a symmetric matrix, centred on zero with symmetric limits.

    Args:
        matrix: array of shape (p, p).
        title: the figure's title.
        label: the colour bar's label.
        limit: the colour scale's half-range; max |matrix| when None.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    p = matrix.shape[0]
    if limit is None:
        limit = float(np.nanmax(np.abs(matrix))) if np.isfinite(matrix).any() else 1.0
    limit = limit if limit > 0 else 1.0
    fig = _new_figure()
    ax = fig.add_subplot()
    image = ax.imshow(
        matrix, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest"
    )
    ticks = np.arange(0, p, _tick_step(p))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xlabel("unit")
    ax.set_ylabel("unit")
    ax.set_title(title, fontsize=10)
    # Short tick labels ("%.2g") so that small covariances (1e-4) stay inside
    # the fixed margins.
    fig.colorbar(image, ax=ax, label=label, shrink=0.9, pad=0.03, format="%.2g")
    return fig


def spectrum_figure(pca, unit, *, title, q=0.9):
    """Bars of the sorted spectrum on both bases, with the UD_q cut marked.

    Args:
        pca: eigenvalues of C, largest first, shape (p,).
        unit: unit variances (diag C), largest first, shape (p,).
        title: the figure's title.
        q: the variance fraction whose cut is drawn.
    """
    p = len(pca)
    edges = np.arange(p + 1) - 0.5
    fig = _new_figure()
    ax = fig.add_subplot()
    # One artist per series (stairs) instead of one patch per bar: as fast for
    # 1,000 units as for 10.
    ax.stairs(pca, edges, fill=True, color="tab:blue", alpha=0.8,
              label="principal components")
    ax.stairs(unit, edges, color="tab:orange", linewidth=1.5, label="units (sorted)")
    total = float(np.sum(pca))
    if total > 0:
        cut = int(np.searchsorted(np.cumsum(pca), q * total * (1 - 1e-10)) + 1)
        ax.axvline(cut - 0.5, color="gray", linestyle="--", linewidth=1)
        ax.text(cut - 0.4, ax.get_ylim()[1] * 0.9, f"UD{round(q * 100)}={cut}",
                color="gray", fontsize=8)
    ax.set_xticks(np.arange(0, p, _tick_step(p)))
    ax.set_xlabel("rank")
    ax.set_ylabel("variance")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return fig


def tradeoff_figure(curves, panels, *, title, xlabel="MSE", xlog=True):
    """Metrics against reconstruction error, one panel per metric.

    The layout of the paper's Figures 2, 3 and 6: one curve per regularizer,
    one point per strength, each point labelled with its strength.

    Args:
        curves: {curve label: {"x": [...], "labels": [...], <panel key>: [...]}}.
        panels: [(panel key, y-axis label), ...].
        title: the figure's title.
        xlabel: the x-axis label.
        xlog: whether the x axis is logarithmic.
    """
    fig = Figure(figsize=(4.2 * len(panels), 3.8), dpi=DPI)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.14, top=0.86, wspace=0.28)
    FigureCanvasAgg(fig)
    for i, (key, ylabel) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for (name, curve), marker in zip(curves.items(), "osD^v"):
            x, y = np.asarray(curve["x"], float), np.asarray(curve[key], float)
            ax.plot(x, y, marker=marker, markersize=4, label=name)
            for xi, yi, text in zip(x, y, curve["labels"]):
                if np.isfinite(xi) and np.isfinite(yi):
                    ax.annotate(text, (xi, yi), fontsize=6, xytext=(3, 3),
                                textcoords="offset points")
        if xlog:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return fig


def curves_figure(curves, *, title, xlabel, ylabel, ylog=True):
    """Line plot of several series, e.g. training-loss curves."""
    fig = _new_figure()
    fig.set_size_inches(6.0, 4.0)
    ax = fig.add_subplot()
    for name, (x, y) in curves.items():
        ax.plot(x, y, label=name, linewidth=1)
    if ylog:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=6, ncol=2)
    return fig


def save_png_file(fig, path):
    """Writes a figure to `path` as PNG."""
    with open(path, "wb") as f:
        f.write(to_png(fig))


def covariance_figures(cov, *, name, when, q=0.9, correlation=None, n_samples=None):
    """The monitor's pictures of one covariance matrix (the paper's Figures 4, 5).

    Args:
        cov: covariance matrix of shape (p, p).
        name: the layer's name, for the titles.
        when: when it was measured ("epoch 3", "before training", ...).
        q: the variance fraction whose UD cut the spectrum marks.
        correlation: the Pearson correlations; when given, a correlation
            heatmap is drawn too.
        n_samples: the number of samples C was measured on, shown in the
            covariance title when given.

    Returns:
        A dict from "covariance", "spectrum" and (with `correlation`)
        "correlation" to figures.
    """
    from keras_covreg import metrics

    suffix = f", N={n_samples}" if n_samples is not None else ""
    figures = {
        "covariance": matrix_figure(
            cov, title=f"{name}: covariance, {when}{suffix}", label="covariance"
        ),
    }
    if correlation is not None:
        figures["correlation"] = matrix_figure(
            correlation, title=f"{name}: correlation, {when}", label="Pearson r", limit=1.0
        )
    figures["spectrum"] = spectrum_figure(
        metrics.spectrum(cov, basis="pca", from_covariance=True),
        metrics.spectrum(cov, basis="unit", from_covariance=True),
        title=f"{name}: spectrum, {when}",
        q=q,
    )
    return figures
