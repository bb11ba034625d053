"""Watch a layer's representation in TensorBoard while a model trains.

Run it, then `tensorboard --logdir logs/monitor_example`.
"""

import keras

from keras_covreg import CovarianceMonitor, CovarianceRegularizer
from keras_covreg.experiments import data

x, _ = data.projected_sources(5000, 20, seed=0)
x_train, x_val = x[:4000], x[4000:]

inputs = keras.Input((20,))
code = keras.layers.Dense(
    10, name="code", activity_regularizer=CovarianceRegularizer(0.3))(inputs)
model = keras.Model(inputs, keras.layers.Dense(20)(code))
model.compile(keras.optimizers.Adam(0.01), "mse")

log_dir = "logs/monitor_example"
model.fit(
    x_train, x_train, batch_size=100, epochs=30,
    validation_data=(x_val, x_val),
    callbacks=[
        CovarianceMonitor("code", log_dir=log_dir, true_dim=4),
        keras.callbacks.TensorBoard(log_dir),
    ],
)
