"""keras_covreg: covariance regularization and representation metrics for Keras 3.

Implements "Disentangled activations in deep networks" (Kagebaeck & Mogren):
the covariance activity regularizer L_Sigma, the metrics the paper measures
representations with, and a callback that writes them to TensorBoard.

Importing this package imports Keras (and so its backend), but neither
matplotlib nor TensorFlow on its own account.
"""

from keras_covreg.layers import (
    ActivityL1Regularization,
    CovarianceRegularization,
    DeCovRegularization,
)
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
from keras_covreg.regularizers import (
    ActivityL1Regularizer,
    CovarianceRegularizer,
    DeCovRegularizer,
)

__version__ = "0.1.0"

__all__ = [
    "ActivityL1Regularization",
    "ActivityL1Regularizer",
    "CovarianceMonitor",
    "CovarianceRegularization",
    "CovarianceRegularizer",
    "DeCovRegularization",
    "DeCovRegularizer",
    "DegenerateActivationsWarning",
    "StreamingCovariance",
    "__version__",
    "covariance",
    "covariance_summary",
    "covariance_variance_ratio",
    "effective_rank",
    "l_sigma",
    "mean_abs_pearson",
    "participation_ratio",
    "spectrum",
    "top_d_variance_ratio",
    "utilized_dimensions",
]


def __getattr__(name):
    # The callback pulls in an event writer; load it only when asked for.
    if name == "CovarianceMonitor":
        from keras_covreg.callbacks import CovarianceMonitor

        return CovarianceMonitor
    raise AttributeError(f"module 'keras_covreg' has no attribute {name!r}")
