"""Every figure is legible: no text on text, nothing cut off, no legend on the data.

Renders each figure function of `keras_covreg._plots` and each experiment's
figures (through its `report`, on made-up results) on tiny data, and checks
what was actually drawn, in pixels:

* no two pieces of text overlap (tick labels, axis labels, titles, legend
  entries, annotations, colour-bar labels);
* every piece of text lies inside the figure (nothing clipped at an edge);
* an axis that draws tick labels has a label, the colour bars included;
* no legend covers a data point (a line's vertices, the top of a bar);
* no annotation covers a scatter point's marker.
"""

import contextlib
import inspect
import types

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text

from keras_covreg import _plots, metrics

# Pixels two boxes may share, or a box may stick out of the figure, before it
# counts: anti-aliasing and round-off, not a visible overlap.
TOLERANCE_PX = 1.0


@contextlib.contextmanager
def drawn_texts(found):
    """Records (text artist, its window extent) of every text drawn inside."""
    original = Text.draw

    def draw(self, renderer):
        original(self, renderer)
        if self.get_visible() and self.get_text().strip():
            found.append((self, self.get_window_extent(renderer)))

    Text.draw = draw
    try:
        yield found
    finally:
        Text.draw = original


def render(fig):
    """Draws `fig`; returns [(text, window extent), ...] of what was drawn."""
    texts = []
    with drawn_texts(texts):
        fig.canvas.draw()
    return texts


def overlap_px(a, b):
    """Width and height, in pixels, of the intersection of two boxes."""
    return (min(a.x1, b.x1) - max(a.x0, b.x0), min(a.y1, b.y1) - max(a.y0, b.y0))


def describe(text):
    return f"{text.get_text()!r} at ({text.get_window_extent().x0:.0f}, " \
           f"{text.get_window_extent().y0:.0f})"


def layout_problems(fig):
    """Every legibility problem of `fig`, in words; [] when there is none."""
    texts = render(fig)
    problems = []
    width, height = fig.canvas.get_width_height()
    for text, box in texts:
        if (box.x0 < -TOLERANCE_PX or box.y0 < -TOLERANCE_PX
                or box.x1 > width + TOLERANCE_PX or box.y1 > height + TOLERANCE_PX):
            problems.append(f"clipped at the figure's edge ({width}x{height}): "
                            f"{describe(text)}")
    for i, (a, box_a) in enumerate(texts):
        for b, box_b in texts[i + 1:]:
            w, h = overlap_px(box_a, box_b)
            if w > TOLERANCE_PX and h > TOLERANCE_PX:
                problems.append(f"overlap: {describe(a)} and {describe(b)}")
    drawn = {id(t) for t, _ in texts}
    for ax in fig.axes:
        for axis, label in ((ax.xaxis, ax.get_xlabel()), (ax.yaxis, ax.get_ylabel())):
            ticks = [t for t in axis.get_ticklabels(which="both") if id(t) in drawn]
            if ticks and not label.strip():
                problems.append(f"an axis with tick labels has no label: "
                                f"{axis.axis_name} of axes {ax.get_label() or ax.get_title()!r}")
        problems += legend_on_data(ax)
    problems += annotation_on_markers(fig, texts)
    return problems


def annotation_on_markers(fig, texts):
    """Annotations whose box covers the centre of any scatter marker."""
    from matplotlib.collections import PathCollection
    from matplotlib.text import Annotation

    centres = [ax.transData.transform(c.get_offsets()) for ax in fig.axes
               for c in ax.collections if isinstance(c, PathCollection)]
    centres = np.concatenate(centres) if centres else np.empty((0, 2))
    problems = []
    for text, box in texts:
        if not isinstance(text, Annotation):
            continue
        covered = [p for p in centres if box.x0 - 2 < p[0] < box.x1 + 2
                   and box.y0 - 2 < p[1] < box.y1 + 2]
        if covered:
            problems.append(f"the annotation {describe(text)} covers {len(covered)} markers")
    return problems


def data_points(ax):
    """Display coordinates of the data an axes shows: line vertices, bar tops."""
    points = []
    for line in ax.get_lines():
        if isinstance(line, Line2D) and line.get_visible() and line.get_label() != "_nolegend_":
            xy = np.column_stack(line.get_data()).astype(float)
            # Reference lines (axvline, axhline) span the axes in axes coordinates.
            if line.get_transform() != ax.transData:
                continue
            points.append(ax.transData.transform(xy[np.isfinite(xy).all(axis=1)]))
    for patch in ax.patches:
        if isinstance(patch, Patch) and patch.get_visible():
            vertices = patch.get_path().vertices
            if len(vertices):
                points.append(patch.get_transform().transform(vertices))
    return np.concatenate(points) if points else np.empty((0, 2))


def legend_on_data(ax):
    legend = ax.get_legend()
    if legend is None or not legend.get_visible():
        return []
    box = legend.get_window_extent()
    inside = [p for p in data_points(ax)
              if box.x0 + TOLERANCE_PX < p[0] < box.x1 - TOLERANCE_PX
              and box.y0 + TOLERANCE_PX < p[1] < box.y1 - TOLERANCE_PX]
    return [f"the legend of axes {ax.get_title()!r} covers {len(inside)} data points"] \
        if inside else []


def assert_legible(fig):
    problems = layout_problems(fig)
    assert not problems, "\n".join(problems)


# -- The checker itself: each rule fails on a figure that breaks it -----------


def bare_figure(size=(3.0, 2.0)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=80)
    FigureCanvasAgg(fig)
    return fig


def test_checker_sees_overlapping_text():
    fig = bare_figure()
    ax = fig.add_subplot(xlabel="x", ylabel="y")
    ax.annotate("lambda = 0.001", (0.5, 0.5))
    ax.annotate("lambda = 0.002", (0.51, 0.5))
    assert any("overlap" in p for p in layout_problems(fig))


def test_checker_sees_clipped_text():
    fig = bare_figure()
    ax = fig.add_subplot(xlabel="x", ylabel="y")
    fig.subplots_adjust(left=0.0)  # the y tick labels and label fall off the edge
    assert any("clipped" in p for p in layout_problems(fig))


def test_checker_sees_a_missing_axis_label_and_a_covering_legend():
    fig = bare_figure()
    ax = fig.add_subplot(xlabel="x")
    ax.plot([0, 1, 2], [0.9, 0.9, 0.9], label="a long legend entry here")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    problems = layout_problems(fig)
    assert any("has no label" in p for p in problems)
    assert any("legend" in p for p in problems)


def test_checker_sees_an_annotation_on_a_marker():
    fig = bare_figure((4.0, 3.0))
    ax = fig.add_subplot(xlabel="x", ylabel="y", xlim=(0, 1), ylim=(0, 1))
    ax.scatter([0.3, 0.4], [0.5, 0.52])
    ax.annotate("lambda = 0.001", (0.3, 0.5), xytext=(4, 4), textcoords="offset points")
    assert any("covers 1 markers" in p for p in layout_problems(fig))


def test_checker_passes_a_clean_figure():
    fig = bare_figure((4.0, 3.0))
    ax = fig.add_subplot(xlabel="epoch", ylabel="loss")
    ax.plot([0, 1, 2], [3, 2, 1], label="loss")
    ax.legend(loc="upper right", bbox_to_anchor=(1.0, 1.0))
    ax.set_ylim(0, 6)
    fig.tight_layout()
    assert layout_problems(fig) == []


# -- Tiny data ----------------------------------------------------------------


def tiny_covariance(p, seed=0):
    h = np.random.default_rng(seed).normal(size=(50, p)) * np.linspace(2.0, 0.01, p)
    return metrics.covariance(h)


# The paper's grids: Section 3.2 (0 and 8 values log-spaced in [0.001, 1]) and
# Figure 6 (0.01 * 2^k, k = 0..10).
SYNTHETIC_STRENGTHS = (0.0, *np.logspace(-3, 0, 8))
SWEEP_STRENGTHS = tuple(0.01 * 2.0**k for k in range(11))


def tradeoff_curves(strengths, keys, seed=0):
    """Two curves whose points crowd like the paper's: MSE over 4 decades."""
    rng = np.random.default_rng(seed)
    curves = {}
    for name, scale in (("L_Sigma", 1.0), ("L1", 3.0)):
        mse = np.sort(1e-8 * scale * 10 ** (4 * rng.random(len(strengths))))
        curve = {"x": list(mse), "strength": list(strengths),
                 "labels": [f"{s:.3g}" for s in strengths]}
        for key in keys:
            curve[key] = list(1 + rng.random(len(strengths)))
        curves[name] = curve
    return curves


# Every figure function of _plots, with tiny arguments. A new one must be added
# here (test_every_figure_function_is_checked).
FIGURE_CASES = {
    "matrix_figure": lambda: _plots.matrix_figure(
        tiny_covariance(10), title="code: covariance, epoch 3", label="covariance"),
    "spectrum_figure": lambda: _plots.spectrum_figure(
        metrics.spectrum(tiny_covariance(10), from_covariance=True),
        metrics.spectrum(tiny_covariance(10), basis="unit", from_covariance=True),
        title="code: spectrum, epoch 3"),
    "covariance_figures": lambda: _plots.covariance_figures(
        tiny_covariance(84), name="code", when="epoch 12", n_samples=10000,
        pca=metrics.spectrum(tiny_covariance(84), from_covariance=True),
        unit=metrics.spectrum(tiny_covariance(84), basis="unit", from_covariance=True), cut=7,
        correlation=np.corrcoef(np.random.default_rng(1).normal(size=(50, 84)).T)),
    "tradeoff_figure": lambda: _plots.tradeoff_figure(
        tradeoff_curves(SYNTHETIC_STRENGTHS, ("mapc", "cvr")), [("mapc", "MAPC"), ("cvr", "CVR")],
        title="Figure 2: residual correlation vs MSE (mean of 10 projections)"),
    "curves_figure": lambda: _plots.curves_figure(
        {f"L_Sigma, lambda={s:.3g}": (np.arange(1, 51) * 10, np.geomspace(1, 1e-3 * (k + 1), 50))
         for k, s in enumerate(SYNTHETIC_STRENGTHS)},
        title="Training loss, projection 0", xlabel="epoch", ylabel="loss"),
}


def figure_functions():
    return sorted(name for name, f in inspect.getmembers(_plots, inspect.isfunction)
                  if f.__module__ == _plots.__name__ and not name.startswith("_")
                  and (name.endswith("_figure") or name.endswith("_figures")))


def test_every_figure_function_is_checked():
    assert set(figure_functions()) <= set(FIGURE_CASES), (
        "add the new figure function to FIGURE_CASES")


def figures_of(result):
    return list(result.values()) if isinstance(result, dict) else [result]


@pytest.mark.parametrize("name", sorted(FIGURE_CASES))
def test_plots_figure_is_legible(name):
    for fig in figures_of(FIGURE_CASES[name]()):
        assert_legible(fig)


# -- The experiments' figures, through their reports --------------------------


@pytest.fixture
def captured_figures(monkeypatch, tmp_path):
    """Figures the experiments save, by file name, instead of PNG files."""
    saved = {}
    monkeypatch.setattr(_plots, "save_png_file",
                        lambda fig, path: saved.__setitem__(str(path).split("/")[-1], fig))
    exp = types.SimpleNamespace(figure_path=lambda name: str(tmp_path / name),
                                write_summary=lambda text: None)
    return saved, exp


def synthetic_results(config):
    rng = np.random.default_rng(0)
    results = []
    for projection in range(config.projections):
        for name in config.regularizers:
            for strength in config.strengths:
                if strength == 0 and name != config.regularizers[0]:
                    continue
                loss = list(np.geomspace(1.0, 1e-4 + strength * 1e-3, 50))
                results.append({
                    "run_id": f"p{projection}_{name if strength else 'none'}_{strength:.6g}",
                    "projection": projection, "strength": strength,
                    "regularizer": name if strength > 0 else "none",
                    "mse": 1e-8 * 10 ** (4 * rng.random()) * (1 + strength),
                    "loss_history": loss, "loss_change_last_10pct": 1e-3,
                    **{k: float(v) for k, v in zip(
                        ("mapc", "cvr", "tdv_unit", "tdv_pca", "ud90_unit", "ud90_pca",
                         "effective_rank"), 1 + rng.random(7))},
                })
    return results


def test_synthetic_figures_are_legible(captured_figures):
    from keras_covreg.experiments import synthetic

    saved, exp = captured_figures
    config = synthetic.Config(projections=2)
    synthetic.report(exp, synthetic_results(config), config, seconds=60.0)
    assert set(saved) == {"figure2_mapc_cvr.png", "figure3_tdv_ud.png", "convergence.png"}
    for name, fig in sorted(saved.items()):
        problems = layout_problems(fig)
        assert not problems, name + ":\n" + "\n".join(problems)


def cifar10_results(config):
    rng = np.random.default_rng(0)
    row = lambda **kw: {
        "cvr": 5 + rng.random(), "ud90_pca": 60 + rng.random(), "ud90_unit": 70.0,
        "mse": 0.007 * (1 + rng.random()), "mapc": 0.05, "tdv_pca": 0.3,
        "effective_rank": 60.0, "epochs": 30, "parameters": 540_583, "seconds": 30.0, **kw}
    results = [row(run_id=f"{r}_seed0", regularizer=r, strength=config.strength, seed=0)
               for r in config.rows]
    results += [row(run_id=f"sweep_{r}_{s:.4g}", regularizer=r, strength=s, seed=0)
                for r in ("l_sigma", "l1") for s in config.sweep_strengths]
    return results


def test_cifar10_figures_are_legible(captured_figures):
    from keras_covreg.experiments import cifar10

    saved, exp = captured_figures
    config = cifar10.Config(seeds=1, sweep=True)
    cifar10.report(exp, cifar10_results(config), config, seconds=60.0)
    assert set(saved) == {"figure6_sweep.png"}
    assert_legible(saved["figure6_sweep.png"])


def xor_results():
    rng = np.random.default_rng(0)
    results = []
    for regularized in (True, False):
        for seed in range(2):
            result = {"run_id": f"{'l_sigma' if regularized else 'none'}_seed{seed:02d}",
                      "regularized": regularized, "seed": seed, "solved": True,
                      "converged": True, "minimal": regularized,
                      "hidden_1_active": 2 if regularized else 4,
                      "hidden_2_active": 1 if regularized else 4}
            for layer in ("hidden_1", "hidden_2"):
                h = rng.normal(size=(4, 4)) * (np.array([1e-2, 1e-2, 1e-5, 1e-6])
                                               if regularized else 0.2)
                result[f"{layer}_covariance"] = metrics.covariance(h).tolist()
            results.append(result)
    return results


# The XOR figures are drawn by _plots.covariance_figures alone; a failure
# here is _plots.py's (the spectrum's offset text, e.g. "1e-4", under its legend).
def test_xor_figures_are_legible(captured_figures):
    from keras_covreg.experiments import xor

    saved, exp = captured_figures
    xor.report(exp, xor_results(), xor.Config(seeds=2), seconds=60.0)
    assert len(saved) == 8
    for name, fig in sorted(saved.items()):
        problems = layout_problems(fig)
        assert not problems, name + ":\n" + "\n".join(problems)


def test_experiment_figures_are_wide_enough():
    # Shown in the docs at the width of the page's text column (about 700 px
    # in mkdocs-material): a figure must carry at least that many pixels.
    for name in ("tradeoff_figure", "curves_figure"):
        fig = figures_of(FIGURE_CASES[name]())[0]
        width, _ = fig.canvas.get_width_height()
        assert width >= 700, (name, width)


def pixels(fig):
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()


def test_a_redrawn_heatmap_equals_a_new_one():
    rng = np.random.default_rng(0)
    a, b = (np.cov(rng.normal(size=(50, 12)), rowvar=False) for _ in range(2))
    kwargs = dict(title="code: covariance", label="covariance", limit=1.5)
    first = _plots.matrix_figure(a, subtitle="epoch 0", **kwargs)
    pixels(first)
    again = _plots.matrix_figure(b, subtitle="epoch 1", previous=first, **kwargs)
    assert again is first
    np.testing.assert_array_equal(
        pixels(again), pixels(_plots.matrix_figure(b, subtitle="epoch 1", **kwargs)))
    # Another colour scale, or values beyond it (arrows on the bar): a new figure.
    assert _plots.matrix_figure(b, previous=first, **{**kwargs, "limit": 2.0}) is not first
    assert _plots.matrix_figure(b * 10, previous=first, **kwargs) is not first


def test_a_blitted_heatmap_png_equals_a_full_render():
    import io

    from PIL import Image

    rng = np.random.default_rng(1)
    kwargs = dict(title="code: covariance", label="covariance", limit=2.0)
    fig = None
    for epoch in range(3):
        c = np.cov(rng.normal(size=(40, 9)), rowvar=False)
        c[2] = c[:, 2] = np.nan  # grey cells too
        fig = _plots.matrix_figure(c, subtitle=f"epoch {epoch}, N=40", previous=fig, **kwargs)
        fast = np.asarray(Image.open(io.BytesIO(_plots.to_png(fig))))
        fresh = _plots.matrix_figure(c, subtitle=f"epoch {epoch}, N=40", **kwargs)
        full = np.asarray(Image.open(io.BytesIO(_plots.to_png_full(fresh))))
        np.testing.assert_array_equal(fast, full)
