"""A small TensorBoard summary writer on top of the `tensorboard` package.

Writes TensorBoard's own plugin formats (scalars, images, histograms, text,
custom-scalars layouts, hparams sessions and experiments) with TensorBoard's
own `EventFileWriter` and plugin metadata helpers; none of it needs
TensorFlow. Every value is in the tensor form that `tf.summary` writes (a
tensor and its plugin's metadata): TensorBoard's fast loader, the default,
drops the description of the legacy forms (``simple_value``, ``image``,
``histo``; measured with TensorBoard 2.21). `flush()` blocks until every queued event is on disk, so a run
interrupted right after a flush leaves a complete, readable event file.
(tensorboardX's `flush()` does not wait for its writer thread's queue: events
written just before it can be missing from disk.)
"""

from __future__ import annotations

import glob
import os
import struct
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# The suffix of the monitor's event files; `replace_file` removes earlier
# files with the same kind before writing.
SUFFIX = "covreg"


class SummaryWriter:
    """Writes TensorBoard summaries to one new event file in `logdir`.

    Args:
        logdir: the run directory (created if missing).
        kind: a word in the file's name (e.g. ``"hparams"``), so that a
            later writer of the same kind can replace this file.
    """

    def __init__(self, logdir: str, *, kind: str = SUFFIX) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        os.makedirs(logdir, exist_ok=True)
        # A unique suffix: two writers opened in the same second would
        # otherwise share a file name.
        suffix = f".{os.getpid()}.{time.time_ns()}.{kind}"
        self._writer = EventFileWriter(logdir, filename_suffix=suffix)

    @classmethod
    def replacing(cls, logdir: str, kind: str) -> SummaryWriter:
        """A writer whose file replaces the earlier files of `kind` in `logdir`.

        For summaries that describe a run as a whole (its hyperparameters, its
        final results), rewritten when the run is reported again.
        """
        for path in glob.glob(os.path.join(glob.escape(logdir), f"events.out.tfevents.*.{kind}")):
            os.remove(path)
        return cls(logdir, kind=kind)

    def _add(self, step: int, value: Any) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(value=[value])
        self._writer.add_event(
            event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)
        )

    def scalar(self, tag: str, value: float, step: int, *, description: str = "") -> None:
        """Adds a scalar; `description` (Markdown) is shown beside its chart."""
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.scalar import metadata
        from tensorboard.util import tensor_util

        self._add(step, summary_pb2.Summary.Value(
            tag=tag, tensor=tensor_util.make_tensor_proto(np.float32(value)),
            metadata=metadata.create_summary_metadata(display_name=tag, description=description),
        ))

    def image(self, tag: str, png: bytes, step: int, *, description: str = "") -> None:
        """Adds a PNG (bytes); its size is read from the PNG header."""
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.image import metadata
        from tensorboard.util import tensor_util

        width, height = struct.unpack(">II", png[16:24])
        # The image plugin's tensor: [width, height, PNG bytes] as strings.
        data = np.array([str(width).encode(), str(height).encode(), png], dtype=object)
        self._add(step, summary_pb2.Summary.Value(
            tag=tag, tensor=tensor_util.make_tensor_proto(data),
            metadata=metadata.create_summary_metadata(display_name=tag, description=description),
        ))

    def histogram(self, tag: str, values: Any, step: int, *, bins: int,
                  description: str = "") -> None:
        """Adds a histogram of `values` over `bins` equal-width buckets."""
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.histogram import metadata
        from tensorboard.util import tensor_util

        values = np.asarray(values, dtype=np.float64).ravel()
        counts, edges = np.histogram(values, bins=bins)
        # The histogram plugin's tensor: one row (left edge, right edge, count)
        # per bucket.
        buckets = np.stack([edges[:-1], edges[1:], counts.astype(np.float64)], axis=1)
        self._add(step, summary_pb2.Summary.Value(
            tag=tag, tensor=tensor_util.make_tensor_proto(buckets),
            metadata=metadata.create_summary_metadata(display_name=tag, description=description),
        ))

    def text(self, tag: str, markdown: str, step: int, *, description: str = "") -> None:
        """Adds a Markdown text (the Text dashboard renders tables)."""
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.text import metadata
        from tensorboard.util import tensor_util

        self._add(step, summary_pb2.Summary.Value(
            tag=tag, tensor=tensor_util.make_tensor_proto(markdown.encode("utf-8")),
            metadata=metadata.create_summary_metadata(display_name=tag, description=description),
        ))

    def custom_scalars(self, categories: Mapping[str, Sequence[tuple[str, Sequence[str]]]]) -> None:
        """Adds a Custom Scalars layout.

        Args:
            categories: {category title: [(chart title, [tag regex, ...]), ...]};
                each chart draws every matching tag of every run as one line.
                Layouts of several runs are merged by TensorBoard.
        """
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.custom_scalar import layout_pb2, metadata
        from tensorboard.util import tensor_util

        layout = layout_pb2.Layout(category=[
            layout_pb2.Category(title=title, chart=[
                layout_pb2.Chart(title=chart, multiline=layout_pb2.MultilineChartContent(tag=tags))
                for chart, tags in charts
            ])
            for title, charts in categories.items()
        ])
        self._add(0, summary_pb2.Summary.Value(
            tag=metadata.CONFIG_SUMMARY_TAG,
            tensor=tensor_util.make_tensor_proto(layout.SerializeToString()),
            metadata=metadata.create_summary_metadata(),
        ))

    def hparams(self, hparams: Mapping[str, Any], *, trial_id: str | None = None) -> None:
        """Marks this directory as one session (trial) of the HParams dashboard."""
        from tensorboard.plugins.hparams import summary_v2

        self._add_summary(summary_v2.hparams_pb(dict(hparams), trial_id=trial_id))

    def hparams_experiment(self, domains: Mapping[str, Sequence[Any]],
                           metrics: Sequence[tuple[str, str, str]]) -> None:
        """Declares the HParams experiment: the hyperparameters and metrics.

        Args:
            domains: {hyperparameter: the values it takes in the sweep}.
            metrics: [(tag, group, description), ...]; `group` is the
                subdirectory of each session that holds the tag ("" for the
                session's own directory).
        """
        from tensorboard.plugins.hparams import summary_v2 as hp

        hparams = [hp.HParam(name, _domain(values)) for name, values in domains.items()]
        metric_list = [hp.Metric(tag, group=group or None, display_name=tag, description=text)
                       for tag, group, text in metrics]
        self._add_summary(hp.hparams_config_pb(hparams, metric_list))

    def _add_summary(self, summary: Any) -> None:
        from tensorboard.compat.proto import event_pb2

        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=0, summary=summary))

    def flush(self) -> None:
        """Blocks until every event added so far is on disk."""
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def _domain(values: Sequence[Any]) -> Any:
    """The HParams domain of a sweep's values: the discrete set it takes."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    distinct = sorted(set(values), key=lambda v: (str(type(v)), v))
    return hp.Discrete(distinct)
