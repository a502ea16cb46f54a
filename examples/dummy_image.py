"""dummy_image: find the images with a blanked row and column.

Data: 750 grey 28x28x1 images of 16 random tones; half are "masked" (label 0):
one random row and one random column set to 0. Scaled to [0, 1], labels
one-hot, MSE loss, mini-batches of 32.
Models: Flatten -> Dropout(0.2) -> Dense(64, relu) -> Dropout(0.5) ->
Dense(2, softmax), which overfits (EpyNN's lesson), and a small CNN:
Convolution(6 filters of 4x4, stride 4) -> Pooling(2x2, max) -> Flatten ->
Dense(2, softmax).

    python examples/dummy_image.py [--quick] [--model feedforward|cnn]
"""

from __future__ import annotations

from epynn_jax import layers
from epynn_jax.layers.convolution import Convolution
from epynn_jax.layers.pooling import Pooling

from _common import load, parse_args, run, train

MODELS = {
    "feedforward": lambda: [layers.Flatten(), layers.Dropout(0.2), layers.Dense(64, "relu"),
                            layers.Dropout(0.5), layers.Dense(2, "softmax")],
    "cnn": lambda: [Convolution(6, (4, 4)), Pooling((2, 2)), layers.Flatten(),
                    layers.Dense(2, "softmax")],
}
SETTINGS = {"feedforward": (0.01, 100, 30), "cnn": (0.01, 100, 30)}


def main(argv=None) -> dict:
    args = parse_args(__doc__, MODELS, argv)
    data = load("dummy_image", args)
    results = {}
    for name in args.models:
        lr, epochs, quick = SETTINGS[name]
        results[name] = train(name, MODELS[name], data, args, loss="MSE", lr=lr, epochs=epochs,
                              quick_epochs=quick, batch_size=32)
    return results


if __name__ == "__main__":
    run(main)
