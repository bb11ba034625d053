"""keras_covreg: covariance regularization and representation metrics for Keras 3.

Implements "Disentangled activations in deep networks" (Kagebaeck & Mogren):
the covariance activity regularizer L_Sigma, the metrics the paper measures
representations with, and a callback that writes them to TensorBoard.

Importing this package imports NumPy and the metrics only; the regularizers,
layers and callback import Keras (and so its backend) on first use, which also
registers them for `keras.saving.load_model`. Import Keras first (as
``import keras`` then ``import keras_covreg``) and they are registered at once.
Nothing here imports matplotlib or TensorFlow on its own account.
"""

import importlib
import sys
from typing import TYPE_CHECKING, Any

from keras_covreg.metrics import (
    DegenerateActivationsWarning,
    StreamingCovariance,
    covariance,
    covariance_summary,
    covariance_variance_ratio,
    effective_rank,
    l_sigma,
    mean_abs_pearson,
    participation_ratio,
    spectrum,
    top_d_variance_ratio,
    utilized_dimensions,
)

if TYPE_CHECKING:
    from keras_covreg.analysis import LayerAnalysis, analyze
    from keras_covreg.callbacks import CovarianceMonitor
    from keras_covreg.layers import (
        ActivityL1Regularization,
        CovarianceRegularization,
        DeCovRegularization,
    )
    from keras_covreg.probe import LayerProbe, Measurement, measure
    from keras_covreg.pruning import CompressReport, PruneReport, compress_principal, prune_units
    from keras_covreg.regularizers import (
        ActivityL1Regularizer,
        CovarianceRegularizer,
        DeCovRegularizer,
    )

# The names that need Keras, and the module of each: loaded on first use, so
# that `keras-covreg --help` (which imports this package) loads no backend.
_NEEDS_KERAS = {
    "ActivityL1Regularization": "keras_covreg.layers",
    "CovarianceRegularization": "keras_covreg.layers",
    "DeCovRegularization": "keras_covreg.layers",
    "ActivityL1Regularizer": "keras_covreg.regularizers",
    "CovarianceRegularizer": "keras_covreg.regularizers",
    "DeCovRegularizer": "keras_covreg.regularizers",
    # The callback also pulls in an event writer.
    "CovarianceMonitor": "keras_covreg.callbacks",
    "LayerAnalysis": "keras_covreg.analysis",
    "analyze": "keras_covreg.analysis",
    "LayerProbe": "keras_covreg.probe",
    "Measurement": "keras_covreg.probe",
    "measure": "keras_covreg.probe",
    "PruneReport": "keras_covreg.pruning",
    "prune_units": "keras_covreg.pruning",
    "CompressReport": "keras_covreg.pruning",
    "compress_principal": "keras_covreg.pruning",
}

__version__ = "0.1.0"

__all__ = [
    "ActivityL1Regularization",
    "ActivityL1Regularizer",
    "CompressReport",
    "CovarianceMonitor",
    "CovarianceRegularization",
    "CovarianceRegularizer",
    "DeCovRegularization",
    "DeCovRegularizer",
    "DegenerateActivationsWarning",
    "LayerAnalysis",
    "LayerProbe",
    "Measurement",
    "PruneReport",
    "StreamingCovariance",
    "__version__",
    "analyze",
    "compress_principal",
    "covariance",
    "covariance_summary",
    "covariance_variance_ratio",
    "effective_rank",
    "l_sigma",
    "mean_abs_pearson",
    "measure",
    "participation_ratio",
    "prune_units",
    "spectrum",
    "top_d_variance_ratio",
    "utilized_dimensions",
]


def __getattr__(name: str) -> Any:
    module = _NEEDS_KERAS.get(name)
    if module is None:
        raise AttributeError(f"module 'keras_covreg' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NEEDS_KERAS))


# A program that has imported Keras gets the layers and regularizers
# registered now, so that `keras.saving.load_model` finds them after
# `import keras_covreg`; otherwise they register on first use of any of them.
if "keras" in sys.modules:
    importlib.import_module("keras_covreg.layers")
