"""Figures of a covariance matrix: heatmaps and spectra, as RGB arrays or PNGs.

Uses matplotlib's object-oriented API with the Agg canvas (no pyplot, no global
state), imported here only, so `import keras_covreg` does not import it.
"""

import io

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# The experiments' figures (tradeoff, curves): 80 dpi.
DPI = 80

# The monitor's pictures are read in TensorBoard's Time Series cards, which
# scale an image down to fit about 330 x 208 pixels (CARD_SIZE, measured in a
# screenshot of TensorBoard 2.21 in a 1280-pixel-wide window, settings pane
# open). A 3.4 x 2.6 inch picture at 100 dpi (340 x 260 pixels) is shown
# there at 0.8 of its size, so 8-point type stays about 9 pixels high; the
# Images dashboard shows it at full size.
PICTURE_SIZE = (3.4, 2.6)
PICTURE_DPI = 100
CARD_SIZE = (330, 208)
FONT_SIZE = 9
SMALL_FONT_SIZE = 8


def _tick_step(p):
    """A step between unit-index labels that keeps about 6 of them."""
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000):
        if p / step <= 6:
            return step
    return max(1, p // 5)


def _new_figure(size=PICTURE_SIZE, dpi=PICTURE_DPI):
    # Fixed axes positions rather than a layout engine: the pictures are drawn
    # every epoch, and constrained layout doubles the drawing time.
    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def to_png(fig):
    """Renders a figure to PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _title(fig, title, subtitle):
    fig.text(0.5, 0.965, title, ha="center", va="top", fontsize=FONT_SIZE + 1,
             fontweight="bold")
    if subtitle:
        fig.text(0.5, 0.885, subtitle, ha="center", va="top", fontsize=SMALL_FONT_SIZE)


def matrix_figure(matrix, *, title, label, limit=None, subtitle=""):
    """A heatmap of a symmetric matrix on a colour scale centred on zero.

    Args:
        matrix: array of shape (p, p); NaN entries are drawn grey.
        title: the picture's title (first line).
        label: the colour bar's label.
        limit: the colour scale's half-range: values beyond +-limit take the
            end colours, and the colour bar shows arrows. max |matrix| when
            None.
        subtitle: a second, smaller line (when, N, the scale).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    p = matrix.shape[0]
    finite = np.isfinite(matrix)
    largest = float(np.max(np.abs(matrix[finite]))) if finite.any() else 0.0
    if limit is None:
        limit = largest
    limit = limit if limit > 0 else 1.0
    fig = _new_figure()
    _title(fig, title, subtitle)
    ax = fig.add_axes((0.2, 0.15, 0.48, 0.62))
    cax = fig.add_axes((0.71, 0.17, 0.03, 0.58))
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.8")
    image = ax.imshow(matrix, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    ticks = np.arange(0, p, _tick_step(p))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.tick_params(labelsize=SMALL_FONT_SIZE)
    ax.set_xlabel("unit", fontsize=FONT_SIZE, labelpad=1)
    ax.set_ylabel("unit", fontsize=FONT_SIZE, labelpad=1)
    extend = "both" if largest > limit * (1 + 1e-9) else "neither"
    # Short tick labels ("%.2g") so that small covariances (1e-4) fit.
    bar = fig.colorbar(image, cax=cax, format="%.2g", extend=extend)
    bar.ax.tick_params(labelsize=SMALL_FONT_SIZE)
    bar.set_label(label, fontsize=FONT_SIZE, labelpad=2)
    return fig


def spectrum_figure(pca, unit, *, title, cut=None, q=0.9, subtitle=""):
    """The sorted spectrum on both bases, with the UD_q cut marked.

    Args:
        pca: eigenvalues of C, largest first, shape (p,).
        unit: unit variances (diag C), largest first, shape (p,).
        title: the picture's title (first line).
        cut: UD_q, drawn as a dashed line after that many components; None
            to leave it out.
        q: the variance fraction of `cut`, for its label.
        subtitle: a second, smaller line.
    """
    p = len(pca)
    edges = np.arange(p + 1) + 0.5
    fig = _new_figure()
    _title(fig, title, subtitle)
    ax = fig.add_axes((0.2, 0.14, 0.75, 0.56))
    # One artist per series (stairs) instead of one patch per bar: as fast for
    # 1,000 units as for 10.
    ax.stairs(pca, edges, fill=True, color="tab:blue", alpha=0.7,
              label="principal comp.")
    ax.stairs(unit, edges, color="tab:orange", linewidth=1.5, label="units")
    if cut is not None and cut > 0:
        ax.axvline(cut + 0.5, color="0.3", linestyle="--", linewidth=1,
                   label=f"UD{round(q * 100)} = {cut}")
    ax.set_xlim(0.5, p + 0.5)
    ax.set_xticks(np.unique(np.r_[1, np.arange(0, p + 1, _tick_step(p))[1:]]))
    ax.tick_params(labelsize=SMALL_FONT_SIZE)
    ax.yaxis.get_major_formatter().set_powerlimits((-2, 3))
    ax.yaxis.get_offset_text().set_fontsize(SMALL_FONT_SIZE)
    ax.set_xlabel("rank (largest first)", fontsize=FONT_SIZE, labelpad=1)
    ax.set_ylabel("variance", fontsize=FONT_SIZE, labelpad=2)
    # The legend goes above the axes, where it cannot hide a bar.
    ax.legend(loc="lower center", bbox_to_anchor=(0.42, 1.0), ncol=3,
              fontsize=SMALL_FONT_SIZE, frameon=False, handlelength=1.0, columnspacing=0.6,
              handletextpad=0.3, borderaxespad=0.2)
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
    fig = _new_figure((6.0, 4.0), DPI)
    fig.subplots_adjust(left=0.14, right=0.95, bottom=0.13, top=0.9)
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


def covariance_figures(cov, *, name, when, q=0.9, correlation=None, n_samples=None,
                       limit=None, limit_note=""):
    """The monitor's pictures of one covariance matrix (the paper's Figures 4, 5).

    Args:
        cov: covariance matrix of shape (p, p).
        name: the layer's name, for the titles.
        when: when it was measured ("epoch 3", "before training", ...).
        q: the variance fraction whose UD cut the spectrum marks.
        correlation: the Pearson correlations; when given, a correlation
            heatmap is drawn too, on [-1, 1].
        n_samples: the number of observations C was measured on, shown when
            given.
        limit: the covariance colour scale's half-range; max |C| when None.
        limit_note: a word on how `limit` was chosen, shown after it in the
            subtitle (e.g. "fixed").

    Returns:
        A dict from "covariance", "spectrum" and (with `correlation`)
        "correlation" to figures.
    """
    from keras_covreg import metrics

    detail = when if n_samples is None else f"{when}, N={n_samples:,}"
    scale = f"scale \u00b1{limit:.2g}" if limit is not None else "scale max |C|"
    figures = {
        "covariance": matrix_figure(
            cov, title=f"{name}: covariance", label="covariance", limit=limit,
            subtitle=f"{detail}; {scale}{f' ({limit_note})' if limit_note else ''}",
        ),
    }
    if correlation is not None:
        figures["correlation"] = matrix_figure(
            correlation, title=f"{name}: correlation", label="Pearson r", limit=1.0,
            subtitle=detail,
        )
    pca = metrics.spectrum(cov, basis="pca", from_covariance=True)
    total = float(np.sum(pca))
    cut = None
    if total > 0:
        cut = int(np.searchsorted(np.cumsum(pca), q * total * (1 - 1e-10)) + 1)
    figures["spectrum"] = spectrum_figure(
        pca, metrics.spectrum(cov, basis="unit", from_covariance=True),
        title=f"{name}: spectrum", cut=cut, q=q, subtitle=detail,
    )
    return figures
