"""Reading event files back as TensorBoard's plugins do, for the tests.

`Events` wraps TensorBoard's plugin event accumulator, which reads both the
tensor form (`tf.summary`, the monitor) and the legacy forms, and answers with
the method names of TensorBoard's older `EventAccumulator` (`Scalars`,
`Images`, `Histograms`, `Tags`, `SummaryMetadata`).
"""

import collections

import numpy as np
from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.util import tensor_util

Scalar = collections.namedtuple("Scalar", "wall_time step value")
Image = collections.namedtuple("Image", "wall_time step width height encoded_image_string")
# buckets: array of shape (k, 3), one (left edge, right edge, count) per bucket.
Histogram = collections.namedtuple("Histogram", "wall_time step buckets")

KINDS = {"scalars": "scalars", "images": "images", "histograms": "histograms"}


class Events:
    """The events of one run directory."""

    def __init__(self, path):
        self._acc = plugin_event_accumulator.EventAccumulator(
            str(path), size_guidance={"tensors": 0})
        self._acc.Reload()

    def Tags(self):  # noqa: N802 (TensorBoard's own name)
        tags = {}
        for kind, plugin in KINDS.items():
            try:
                tags[kind] = sorted(self._acc.PluginTagToContent(plugin))
            except KeyError:  # no tag of that plugin in the run
                tags[kind] = []
        typed = {t for ts in tags.values() for t in ts}
        tags["tensors"] = sorted(set(self._acc.Tags()["tensors"]) - typed)
        return tags

    def SummaryMetadata(self, tag):  # noqa: N802
        return self._acc.SummaryMetadata(tag)

    def _events(self, tag):
        return self._acc.Tensors(tag)

    def Scalars(self, tag):  # noqa: N802
        return [Scalar(e.wall_time, e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
                for e in self._events(tag)]

    def Images(self, tag):  # noqa: N802
        out = []
        for e in self._events(tag):
            width, height, png = e.tensor_proto.string_val[:3]
            out.append(Image(e.wall_time, e.step, int(width), int(height), png))
        return out

    def Histograms(self, tag):  # noqa: N802
        return [Histogram(e.wall_time, e.step,
                          np.asarray(tensor_util.make_ndarray(e.tensor_proto), np.float64))
                for e in self._events(tag)]
