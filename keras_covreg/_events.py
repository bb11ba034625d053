"""A small TensorBoard summary writer on top of the `tensorboard` package.

TensorBoard's own `EventFileWriter` needs no TensorFlow, and its `flush()`
blocks until every queued event is on disk, so a run interrupted right after a
flush leaves a complete, readable event file. (tensorboardX's `flush()` does
not wait for its writer thread's queue: events written just before it can be
missing from disk.)
"""

import os
import struct
import time

import numpy as np

HISTOGRAM_BINS = 30


class SummaryWriter:
    """Writes scalars, PNG images and histograms to one event file.

    Args:
        logdir: the run directory (created if missing).
    """

    def __init__(self, logdir):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        os.makedirs(logdir, exist_ok=True)
        # A unique suffix: two writers opened in the same second would
        # otherwise share a file name.
        suffix = f".{os.getpid()}.{time.time_ns()}.covreg"
        self._writer = EventFileWriter(logdir, filename_suffix=suffix)

    def _add(self, step, value):
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(value=[value])
        self._writer.add_event(
            event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)
        )

    def scalar(self, tag, value, step):
        from tensorboard.compat.proto import summary_pb2

        self._add(step, summary_pb2.Summary.Value(tag=tag, simple_value=float(value)))

    def image(self, tag, png, step):
        """Adds a PNG (bytes); its size is read from the PNG header."""
        from tensorboard.compat.proto import summary_pb2

        width, height = struct.unpack(">II", png[16:24])
        image = summary_pb2.Summary.Image(
            height=height, width=width, colorspace=3, encoded_image_string=png
        )
        self._add(step, summary_pb2.Summary.Value(tag=tag, image=image))

    def histogram(self, tag, values, step, bins=HISTOGRAM_BINS):
        from tensorboard.compat.proto import summary_pb2

        values = np.asarray(values, dtype=np.float64).ravel()
        counts, edges = np.histogram(values, bins=bins)
        histo = summary_pb2.HistogramProto(
            min=float(values.min()),
            max=float(values.max()),
            num=float(values.size),
            sum=float(values.sum()),
            sum_squares=float(np.square(values).sum()),
            bucket_limit=edges[1:].tolist(),
            bucket=counts.astype(np.float64).tolist(),
        )
        self._add(step, summary_pb2.Summary.Value(tag=tag, histo=histo))

    def flush(self):
        """Blocks until every event added so far is on disk."""
        self._writer.flush()

    def close(self):
        self._writer.close()
