"""Builders for the paper's example models (Kagebaeck & Mogren, Section 3).

Each builder returns an uncompiled `keras.Model` whose coding layer(s) are
named, so that a regularizer can be attached and a monitor can watch them.
"""

from typing import TYPE_CHECKING, Any

from keras_covreg import _validation

if TYPE_CHECKING:
    import keras

# Section 3.4: an 84-unit code; the rest is our reading of its text: two
# conv + two dense layers in the encoder, the mirror image in the decoder,
# 540,583 parameters for 32x32x3 inputs.
CONV_CODE_UNITS = 84
CONV_CODE_NAME = "code"


def linear_autoencoder(input_dim: int, *, code_units: int = 10,
                       code_regularizer: Any = None) -> "keras.Model":
    """Section 3.2: a linear autoencoder with a linear coding layer.

    Args:
        input_dim: size of the inputs (the random projection's output).
        code_units: width of the coding layer, named ``"code"``. Defaults to
            10, as in the paper.
        code_regularizer: activity regularizer for the coding layer, or None.

    Returns:
        An uncompiled `keras.Model` from (input_dim,) to (input_dim,).

    Examples:
        >>> linear_autoencoder(20).count_params()
        430
    """
    import keras  # on first use: the command line's --help loads no backend

    _validation.check_int_in_range("input_dim", input_dim, 1, 2**31)
    _validation.check_int_in_range("code_units", code_units, 1, 2**31)
    inputs = keras.Input((input_dim,), name="x")
    code = keras.layers.Dense(
        code_units, activity_regularizer=code_regularizer, name="code"
    )(inputs)
    outputs = keras.layers.Dense(input_dim, name="reconstruction")(code)
    return keras.Model(inputs, outputs, name="linear_autoencoder")


def xor_mlp(*, hidden_units: int = 4, hidden_regularizer: Any = None) -> "keras.Model":
    """Section 3.3: a 2-4-4-1 perceptron of logistic units.

    Args:
        hidden_units: width of both hidden layers, named ``"hidden_1"`` and
            ``"hidden_2"``. Defaults to 4, as in the paper.
        hidden_regularizer: activity regularizer for both hidden layers (the
            same object; it holds no state), or None.

    Returns:
        An uncompiled `keras.Model` from (2,) to a probability of shape (1,).

    Examples:
        >>> xor_mlp().count_params()
        37
    """
    import keras  # on first use: the command line's --help loads no backend

    _validation.check_int_in_range("hidden_units", hidden_units, 1, 2**31)
    inputs = keras.Input((2,), name="x")
    h = inputs
    for i in (1, 2):
        h = keras.layers.Dense(
            hidden_units,
            activation="sigmoid",
            activity_regularizer=hidden_regularizer,
            name=f"hidden_{i}",
        )(h)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="output")(h)
    return keras.Model(inputs, outputs, name="xor_mlp")


# The activations `conv_autoencoder` accepts for its code and its output.
ACTIVATIONS = ("tanh", "linear", "relu", "sigmoid")
# Width of the dense layers between the convolutions and the code (both
# sides) in our reading of Section 3.4; 0 leaves them out.
CONV_DENSE_UNITS = 120


def conv_autoencoder(
    *, input_shape: tuple[int, int, int] = (32, 32, 3), code_units: int = CONV_CODE_UNITS,
    code_regularizer: Any = None, code_activation: str = "tanh",
    output_activation: str = "sigmoid", dense_units: int = CONV_DENSE_UNITS,
) -> "keras.Model":
    """Section 3.4: the convolutional autoencoder for CIFAR-10.

    Encoder: conv 3x3x16 (leaky ReLU), max-pool 2, conv 5x5x32 (leaky ReLU),
    max-pool 2, dense `dense_units` (tanh), dense `code_units` (the code,
    named ``"code"``, `code_activation`). Decoder: the mirror image, ending
    in `output_activation` (a sigmoid, so that reconstructions lie in [0, 1]
    like the scaled pixels). 540,583 parameters with the defaults; the paper
    says "roughly 500,000". With ``dense_units=0`` the code reads the
    flattened feature maps directly (372,727 parameters).

    Args:
        input_shape: (height, width, channels); height and width divisible
            by 4. Defaults to CIFAR-10's (32, 32, 3).
        code_units: width of the code. Defaults to 84.
        code_regularizer: activity regularizer for the code, or None.
        code_activation: the code's activation, one of `ACTIVATIONS`.
            Defaults to ``"tanh"``.
        output_activation: the reconstruction's activation, one of
            `ACTIVATIONS`: ``"sigmoid"`` (default) for pixels in [0, 1],
            ``"tanh"`` for [-1, 1], ``"linear"`` for standardized pixels.
        dense_units: width of the dense layer on each side of the code; 0
            for none. Defaults to 120.

    Returns:
        An uncompiled `keras.Model` mapping images to reconstructions.

    Raises:
        ValueError: for a bad argument.

    Examples:
        >>> conv_autoencoder().count_params()
        540583
        >>> conv_autoencoder(dense_units=0).count_params()
        372727
    """
    import keras  # on first use: the command line's --help loads no backend

    height, width, channels = input_shape
    if height % 4 or width % 4:
        raise ValueError(
            "`input_shape` needs a height and width divisible by 4. "
            f"Received: input_shape={input_shape}"
        )
    _validation.check_int_in_range("code_units", code_units, 1, 2**31)
    _validation.check_int_in_range("dense_units", dense_units, 0, 2**31)
    _validation.check_choice("code_activation", code_activation, ACTIVATIONS)
    _validation.check_choice("output_activation", output_activation, ACTIVATIONS)
    act = "leaky_relu"
    inputs = keras.Input(input_shape, name="image")
    h = keras.layers.Conv2D(16, 3, padding="same", activation=act)(inputs)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(32, 5, padding="same", activation=act)(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    if dense_units:
        h = keras.layers.Dense(dense_units, activation="tanh")(h)
    code = keras.layers.Dense(
        code_units,
        activation=code_activation,
        activity_regularizer=code_regularizer,
        name=CONV_CODE_NAME,
    )(h)
    h = keras.layers.Dense(dense_units, activation="tanh")(code) if dense_units else code
    h = keras.layers.Dense((height // 4) * (width // 4) * 32, activation=act)(h)
    h = keras.layers.Reshape((height // 4, width // 4, 32))(h)
    h = keras.layers.UpSampling2D(2)(h)
    h = keras.layers.Conv2DTranspose(16, 5, padding="same", activation=act)(h)
    h = keras.layers.UpSampling2D(2)(h)
    outputs = keras.layers.Conv2DTranspose(
        channels, 3, padding="same", activation=output_activation, name="reconstruction"
    )(h)
    return keras.Model(inputs, outputs, name="conv_autoencoder")
