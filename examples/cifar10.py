"""Section 3.4 of the paper: Table 1 for the conv autoencoder on CIFAR-10.

A small version of `keras-covreg cifar10`; see `--help` there for every option.
Pass the CIFAR-10 python-version directory as the first argument, or nothing to
let Keras download the data set.
"""

import sys

from keras_covreg.experiments import cifar10

config = cifar10.Config(
    data_dir=sys.argv[1] if len(sys.argv) > 1 else None, seeds=1, max_epochs=10
)
experiment, summary = cifar10.run(config, out="runs")
print(summary)
