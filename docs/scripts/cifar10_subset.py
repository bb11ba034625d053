"""Writes a smaller CIFAR-10 in the python-version layout, to carry to a GPU.

Keeps the first `--train-per-batch` images of each of data_batch_1..5 and the
first `--test` images of test_batch, read and validated by the package's own
reader. The defaults give the 19,000 images (58 MB as uint8) of the GPU runs
in docs/reproduction.md: 15,000 training images (13,500 train + 1,500
validation) and 4,000 test images.

Usage: python docs/scripts/cifar10_subset.py SOURCE_DIR OUT_DIR
"""

import argparse
import os
import pickle

import numpy as np

from keras_covreg.experiments import data


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--train-per-batch", type=int, default=3000)
    parser.add_argument("--test", type=int, default=4000)
    args = parser.parse_args()
    (x_train, y_train), (x_test, y_test) = data.load_cifar10(args.source_dir)
    per_batch = len(x_train) // 5
    parts = [(x_train[i * per_batch:][: args.train_per_batch],
              y_train[i * per_batch:][: args.train_per_batch]) for i in range(5)]
    parts.append((x_test[: args.test], y_test[: args.test]))
    os.makedirs(args.out_dir, exist_ok=True)
    for name, (images, labels) in zip(data.CIFAR10_FILES, parts):
        # Back to rows of the R, G and B planes, as in the original files.
        rows = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))
        batch = {b"batch_label": b"subset of " + name.encode(), b"data": rows,
                 b"labels": labels.ravel().astype(int).tolist()}
        with open(os.path.join(args.out_dir, name), "wb") as f:
            # Protocol 4: arrays pickle as plain bytes, which the package's
            # restricted unpickler accepts.
            pickle.dump(batch, f, protocol=4)
        print(name, rows.shape)


if __name__ == "__main__":
    main()
