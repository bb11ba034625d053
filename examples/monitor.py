"""Watch a layer's representation in TensorBoard while a model trains.

Run it, then `tensorboard --logdir logs --samples_per_plugin images=100000`
(every epoch's pictures, not TensorBoard's default 10 per tag). The monitor's
curves, pictures, Custom Scalars layout and HParams session sit beside Keras's
own loss curves, each metric once.
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

log_dir = "logs/l_sigma_0.3"
model.fit(
    x_train, x_train, batch_size=100, epochs=30,
    validation_data=(x_val, x_val),
    callbacks=[
        CovarianceMonitor("code", log_dir=log_dir, true_dim=4,
                          hparams={"penalty": "l_sigma", "strength": 0.3}),
        keras.callbacks.TensorBoard(log_dir),
    ],
)
