"""Figures of a covariance matrix: heatmaps and spectra, as RGB arrays or PNGs.

Uses matplotlib's object-oriented API with the Agg canvas (no pyplot, no global
state), imported here only, so `import keras_covreg` does not import it.
"""

import io
import itertools
import math

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

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


def _short(value, _=None):
    """A tick label of at most about five characters: 0.25, 750, 1.2e3, 2e−4.

    Two significant digits; a true minus sign, since the hyphen-minus is one
    pixel wide and vanishes when TensorBoard scales a picture down; exponents
    without "+" and leading zeros.
    """
    text = f"{value:.3g}" if 1 <= abs(value) < 1000 else f"{value:.2g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text.replace("-", "\u2212")


_SHORT = FuncFormatter(_short)


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


# zlib level 3 instead of Pillow's 6: a quarter less time per picture for 5%
# larger files (measured on a 340 x 260 heatmap), and the monitor encodes
# several pictures every epoch.
PNG_COMPRESS_LEVEL = 3


def to_png(fig):
    """Renders a figure to PNG bytes.

    A heatmap of `matrix_figure` that is redrawn every epoch is rendered by
    blitting: its axes, ticks, colour bar and labels, which do not change,
    are rendered once and kept; each call restores them and draws only what
    changes (the cells, the subtitle and the frame over the cells). Most of a
    picture's time goes to the text and ticks, so this cuts a heatmap's time
    several times over; the pixels equal those of a full render (tested).
    """
    changing = getattr(fig, "_changing", None)
    if changing is None:
        return to_png_full(fig)
    canvas = fig.canvas
    if getattr(fig, "_background", None) is None:
        for artist in changing:
            artist.set_visible(False)
        canvas.draw()
        fig._background = canvas.copy_from_bbox(fig.bbox)
        for artist in changing:
            artist.set_visible(True)
    canvas.restore_region(fig._background)
    for artist in changing:
        artist.draw(canvas.get_renderer())
    return _encode_png(canvas)


def to_png_full(fig):
    """Renders every artist of a figure to PNG bytes (`savefig`)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
    return buffer.getvalue()


def _encode_png(canvas):
    """The Agg canvas's pixels as PNG bytes (as `savefig` writes them)."""
    from PIL import Image  # matplotlib's own dependency

    width, height = canvas.get_width_height()
    image = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buffer = io.BytesIO()
    image.save(buffer, format="png", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _title(fig, title, subtitle):
    fig.text(0.5, 0.965, title, ha="center", va="top", fontsize=FONT_SIZE + 1,
             fontweight="bold")
    if subtitle:
        fig.text(0.5, 0.885, subtitle, ha="center", va="top", fontsize=SMALL_FONT_SIZE)


# The most cells per side a heatmap draws: about the pixels the heatmap spans
# in a picture (the axes are some 160 pixels wide). A wider matrix is shown as
# means of square blocks, said in the x-axis label; drawing a million cells into
# 160 pixels costs time (0.35 s per picture at p = 1,024) and shows no more.
MAX_CELLS = 256


def _block_means(matrix):
    """`matrix` as means of b x b blocks with at most MAX_CELLS per side, and b."""
    p = matrix.shape[0]
    block = math.ceil(p / MAX_CELLS)
    if block == 1:
        return matrix, 1
    cells = math.ceil(p / block)
    valid = np.zeros((cells * block, cells * block), dtype=bool)
    valid[:p, :p] = np.isfinite(matrix)
    padded = np.zeros(valid.shape)
    padded[:p, :p] = np.where(valid[:p, :p], matrix, 0.0)
    shape = (cells, block, cells, block)
    sums = padded.reshape(shape).sum(axis=(1, 3))
    counts = valid.reshape(shape).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan), block


def matrix_figure(matrix, *, title, label, limit=None, subtitle="", previous=None):
    """A heatmap of a symmetric matrix on a colour scale centred on zero.

    Args:
        matrix: array of shape (p, p); NaN entries are drawn grey.
        title: the picture's title (first line).
        label: the colour bar's label.
        limit: the colour scale's half-range: values beyond +-limit take the
            end colours, and the colour bar shows arrows. max |matrix| when
            None.
        subtitle: a second, smaller line (when, N, the scale).
        previous: a figure this function returned before. When it has the
            same size, title, label, colour scale and arrows, it is redrawn
            with the new values and subtitle and returned (the monitor draws
            the same heatmaps every epoch: this saves building the axes and
            the colour bar, a third of a picture's time); otherwise a new
            figure is made.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    p = matrix.shape[0]
    finite = np.isfinite(matrix)
    largest = float(np.max(np.abs(matrix[finite]))) if finite.any() else 0.0
    if limit is None:
        limit = largest
    limit = limit if limit > 0 else 1.0
    extend = "both" if largest > limit * (1 + 1e-9) else "neither"
    shown, block = _block_means(matrix)
    layout = (p, title, label, limit, extend)
    kept = getattr(previous, "_heatmap", None)
    if kept is not None and kept[0] == layout:
        _, image, subtitle_text = kept
        image.set_data(shown)
        if subtitle_text is not None:
            subtitle_text.set_text(subtitle)
        if subtitle_text is not None or not subtitle:
            return previous
    fig = _new_figure()
    _title(fig, title, subtitle)
    ax = fig.add_axes((0.2, 0.15, 0.48, 0.62))
    cax = fig.add_axes((0.71, 0.17, 0.03, 0.58))
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.8")
    image = ax.imshow(shown, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest",
                      extent=(-0.5, p - 0.5, p - 0.5, -0.5))
    ticks = np.arange(0, p, _tick_step(p))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.tick_params(labelsize=SMALL_FONT_SIZE)
    ax.set_xlabel("unit" if block == 1 else f"unit (means of {block}\u00d7{block} blocks)",
                  fontsize=FONT_SIZE, labelpad=1)
    ax.set_ylabel("unit", fontsize=FONT_SIZE, labelpad=1)
    # Short tick labels so that small covariances (1e-4) fit.
    bar = fig.colorbar(image, cax=cax, format=_SHORT, extend=extend)
    bar.ax.tick_params(labelsize=SMALL_FONT_SIZE)
    bar.set_label(label, fontsize=FONT_SIZE, labelpad=5)
    subtitle_text = fig.texts[1] if subtitle else None
    fig._heatmap = (layout, image, subtitle_text)
    # What changes when the figure is redrawn with new values (`to_png`): the
    # cells, the subtitle, and the frame, which is drawn over the cells.
    fig._changing = [image, *ax.spines.values(), *([subtitle_text] if subtitle_text else [])]
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
    # One artist per series instead of one patch per bar, and not `stairs`,
    # whose patch updates the data limits one path segment at a time (85 ms
    # at p = 1,024): a filled step and a step line cost the same for any p.
    ax.fill_between(edges, np.r_[pca, pca[-1:]], step="post", color="tab:blue", alpha=0.7,
                    linewidth=0, label="principal comp.")
    ax.step(edges, np.r_[unit, unit[-1:]], where="post", color="tab:orange", linewidth=1.5,
            label="units")
    if cut is not None and cut > 0:
        ax.axvline(cut + 0.5, color="0.3", linestyle="--", linewidth=1,
                   label=f"UD{round(q * 100)} = {cut}")
    ax.set_xlim(0.5, p + 0.5)
    top = float(np.nanmax(np.r_[pca, unit], initial=0.0))
    if np.isfinite(top) and top > 0:
        ax.set_ylim(0.0, top * 1.05)  # variances start at 0, as bars do
    ax.set_xticks(np.unique(np.r_[1, np.arange(0, p + 1, _tick_step(p))[1:]]))
    ax.tick_params(labelsize=SMALL_FONT_SIZE)
    # Each tick label carries its own scale ("0.0002", "1e-05"): a shared
    # offset text ("1e-4") above the axis ran into the legend there.
    ax.yaxis.set_major_formatter(_SHORT)
    ax.set_xlabel("rank (largest first)", fontsize=FONT_SIZE, labelpad=1)
    ax.set_ylabel("variance", fontsize=FONT_SIZE, labelpad=2)
    # The legend goes above the axes, where it cannot hide a bar.
    ax.legend(loc="lower center", bbox_to_anchor=(0.42, 1.0), ncol=3,
              fontsize=SMALL_FONT_SIZE, frameon=False, handlelength=1.0, columnspacing=0.6,
              handletextpad=0.3, borderaxespad=0.2)
    return fig


# The experiments' figures (Figures 2, 3, 6 and the convergence plot) are shown
# in the docs at the width of mkdocs-material's text column, about 700 px:
# 100 dpi and at least 7 inches wide draw them at that width or more, so they
# are never scaled up.
FIGURE_DPI = 100


def _lambda_colours(curves):
    """A log colour scale over the strengths > 0 of all curves, or None."""
    from matplotlib.colors import LogNorm

    positive = [s for c in curves.values() for s in c.get("strength", ()) if s > 0]
    if not positive:
        return None
    low, high = min(positive), max(positive)
    return LogNorm(low, high if high > low else low * 10)


def _annotate_where_free(fig, axes, notes):
    """Writes each (axes, text, xy) beside its point where it covers nothing.

    Four places are tried in turn (above right, below right, above left,
    below left of the point); a label goes in the first that stays inside its
    axes and overlaps no text already drawn (tick labels, axis labels, other
    labels) and no plotted point, and is left out when none does.
    """
    fig.canvas.draw()  # the layout is final: place labels against it
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    taken = [t.get_window_extent(renderer) for ax in axes
             for t in ax.get_xticklabels() + ax.get_yticklabels()
             + [ax.xaxis.label, ax.yaxis.label] if t.get_text()]
    taken += _marker_boxes(axes, renderer)
    places = [((4, 4), "left", "bottom"), ((4, -4), "left", "top"),
              ((-4, 4), "right", "bottom"), ((-4, -4), "right", "top")]
    for ax, text, xy in notes:
        frame = ax.get_window_extent(renderer)
        for offset, ha, va in places:
            note = ax.annotate(text, xy, fontsize=8, xytext=offset, textcoords="offset points",
                               ha=ha, va=va)
            box = note.get_window_extent(renderer)
            inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            if inside and not any(box.overlaps(other) for other in taken):
                taken.append(box)
                break
            note.remove()


def _marker_boxes(axes, renderer):
    """The display-space boxes of every scatter point on the axes."""
    from matplotlib.collections import PathCollection
    from matplotlib.transforms import Bbox

    boxes = []
    for ax in axes:
        for points in ax.collections:
            if not isinstance(points, PathCollection):
                continue
            half = np.sqrt(np.max(points.get_sizes(), initial=36.0)) / 2 \
                * renderer.points_to_pixels(1.0) + 1
            for x, y in ax.transData.transform(points.get_offsets()):
                if np.isfinite(x) and np.isfinite(y):
                    boxes.append(Bbox([[x - half, y - half], [x + half, y + half]]))
    return boxes


def tradeoff_figure(curves, panels, *, title, xlabel="MSE", xlog=True):
    """Metrics against reconstruction error, one panel per metric.

    The layout of the paper's Figures 2, 3 and 6: one curve per regularizer
    (told apart by marker, named in a legend below the panels), one point per
    strength, coloured by lambda on a log scale with one colour bar; a point
    at lambda = 0 is white. The labels given are written beside their points
    where they fit without overlapping other text.

    Args:
        curves: {curve label: {"x": [...], "strength": [...], "labels": [...],
            <panel key>: [...]}}; "strength" (lambda of each point) and
            "labels" (text beside each point, "" for none) are optional.
        panels: [(panel key, y-axis label), ...].
        title: the figure's title.
        xlabel: the x-axis label.
        xlog: whether the x axis is logarithmic.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter

    norm, cmap = _lambda_colours(curves), colormaps["viridis"]
    fig = Figure(figsize=(3.6 * len(panels) + 1.2, 4.0), dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    notes = []
    for ax, (key, ylabel) in zip(axes, panels):
        for (name, curve), marker in zip(curves.items(), "osD^v"):
            x, y = np.asarray(curve["x"], float), np.asarray(curve[key], float)
            s = np.asarray(curve.get("strength", np.full(len(x), np.nan)), float)
            colours = [cmap(norm(v)) if norm is not None and v > 0 else "white" for v in s]
            ax.plot(x, y, color="0.55", linewidth=1, zorder=1)
            ax.scatter(x, y, c=colours, marker=marker, s=36, edgecolors="black",
                       linewidths=0.6, zorder=2, label=name)
            notes += [(ax, text, (xi, yi)) for xi, yi, text in
                      zip(x, y, curve.get("labels", ())) if text
                      and np.isfinite(xi) and np.isfinite(yi)]
        if xlog:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # 2e-8, 3e-8, ... ran together
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if norm is not None:
        fig.colorbar(ScalarMappable(norm, cmap), ax=list(axes), label="λ (strength)",
                     shrink=0.9)
    # The legend names the curves by marker; colour is lambda's.
    handles = [Line2D([], [], marker=marker, linestyle="", markerfacecolor="0.8",
                      markeredgecolor="black", label=name)
               for name, marker in zip(curves, "osD^v")]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9)
    fig.suptitle(title, fontsize=11)
    _annotate_where_free(fig, axes, notes)
    return fig


def curves_figure(curves, *, title, xlabel, ylabel, ylog=True, markers=False):
    """Line plot of several series, e.g. training-loss curves.

    The legend stands to the right of the axes, where it covers no curve.
    With `markers`, every point is marked (a different marker per series).
    """
    fig = Figure(figsize=(8.0, 4.0), dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for (name, (x, y)), marker in zip(curves.items(), itertools.cycle("osD^v")):
        ax.plot(x, y, label=name, linewidth=1.2, marker=marker if markers else None,
                markersize=5)
    if ylog:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    fig.legend(loc="outside right upper", fontsize=9)
    return fig


def save_png_file(fig, path):
    """Writes a figure to `path` as PNG."""
    with open(path, "wb") as f:
        f.write(to_png(fig))


def covariance_figures(cov, *, name, when, pca, unit, cut=None, q=0.9, correlation=None,
                       n_samples=None, limit=None, limit_note="", previous=None):
    """The monitor's pictures of one covariance matrix (the paper's Figures 4, 5).

    Draws what it is given; the caller computes the spectra and the UD cut
    (`keras_covreg.metrics.spectral_summary`).

    Args:
        cov: covariance matrix of shape (p, p).
        name: the layer's name, for the titles.
        when: when it was measured ("epoch 3", "before training", ...).
        pca: eigenvalues of `cov`, largest first, shape (p,).
        unit: the unit variances (diagonal of `cov`), largest first, shape (p,).
        cut: UD_q on the PCA basis, marked on the spectrum; None for no mark.
        q: the variance fraction of `cut`, for its label.
        correlation: the Pearson correlations; when given, a correlation
            heatmap is drawn too, on [-1, 1].
        n_samples: the number of observations C was measured on, shown when
            given.
        limit: the covariance colour scale's half-range; max |C| when None.
        limit_note: a word on how `limit` was chosen, shown after it in the
            subtitle (e.g. "fixed").
        previous: the dict this function returned for the same layer before;
            its heatmaps are redrawn where their layout allows (see
            `matrix_figure`).

    Returns:
        A dict from "covariance", "spectrum" and (with `correlation`)
        "correlation" to figures.
    """
    detail = when if n_samples is None else f"{when}, N={n_samples:,}"
    scale = f"scale \u00b1{limit:.2g}" if limit is not None else "scale max |C|"
    previous = previous or {}
    figures = {
        "covariance": matrix_figure(
            cov, title=f"{name}: covariance", label="covariance", limit=limit,
            subtitle=f"{detail}; {scale}{f' ({limit_note})' if limit_note else ''}",
            previous=previous.get("covariance"),
        ),
    }
    if correlation is not None:
        figures["correlation"] = matrix_figure(
            correlation, title=f"{name}: correlation", label="Pearson r", limit=1.0,
            subtitle=detail, previous=previous.get("correlation"),
        )
    figures["spectrum"] = spectrum_figure(
        pca, unit, title=f"{name}: spectrum", cut=cut or None, q=q, subtitle=detail)
    return figures
