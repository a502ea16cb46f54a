"""The ``epynn-jax`` command: train a bundled example, inspect and use model files.

::

    epynn-jax list                                   the bundled examples and their models
    epynn-jax train EXAMPLE [--model NAME] [--epochs N] [--seed S] [--batch-size B]
                    [--lr LR] [--out DIR] [--quick] [--synthetic] [--cache-dir DIR]
    epynn-jax info MODEL                             what a model file holds
    epynn-jax predict MODEL INPUT.npy [--out OUT.npy]

``python -m epynn_jax`` is the same command. Errors a user can cause (a bad
argument, a missing or corrupt file, data that does not fit the model) print
one line on stderr and exit with status 1 (2 for usage errors), never a
traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["EXAMPLES", "Recipe", "main", "build_parser"]

MODEL_SUFFIX = ".epynn"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How the command trains one model of one example."""

    layers: Callable[[], list]
    loss: str = "MSE"
    learning_rate: float = 0.1
    epochs: int = 100
    batch_size: int | None = None
    quick_epochs: int = 20


def _softmax(units: int, temperature: float = 1.0):
    from epynn_jax.layers import Dense
    from epynn_jax.maths.activations import ActivationHPars

    return Dense(units, "softmax", hpars=ActivationHPars(softmax_temperature=temperature))


def _examples() -> dict[str, dict[str, Recipe]]:
    from epynn_jax import layers as L

    rnn, lstm, gru, conv, pool = L.RNN, L.LSTM, L.GRU, L.Convolution, L.Pooling

    return {
        "dummy_boolean": {
            "perceptron": Recipe(lambda: [L.Dense(1, "sigmoid")], "MSE", 0.1, 100),
        },
        "dummy_string": {
            "feedforward": Recipe(lambda: [L.Flatten(), _softmax(2)], "BCE", 0.001, 50),
            "rnn": Recipe(lambda: [rnn(1), _softmax(2)], "BCE", 0.001, 50),
            "lstm": Recipe(lambda: [lstm(1), _softmax(2)], "BCE", 0.005, 50),
            "gru": Recipe(lambda: [gru(1), _softmax(2)], "BCE", 0.005, 50),
        },
        "dummy_time": {
            "feedforward": Recipe(lambda: [L.Flatten(), L.Dense(64, "relu"), _softmax(2)],
                                  "MSE", 0.005, 100),
            "rnn": Recipe(lambda: [rnn(10), _softmax(2, 5.0)], "MSE", 0.2, 100, 32, 15),
        },
        "dummy_image": {
            "feedforward": Recipe(lambda: [L.Flatten(), L.Dropout(0.2), L.Dense(64, "relu"),
                                           L.Dropout(0.5), _softmax(2)], "MSE", 0.01, 100, 32),
            "cnn": Recipe(lambda: [conv(6, (4, 4)), pool((2, 2)), L.Flatten(), _softmax(2)],
                          "MSE", 0.01, 100, 32, 30),
        },
        "ptm_protein": {
            "feedforward": Recipe(lambda: [L.Flatten(), L.Dropout(0.2), L.Dense(64, "relu"),
                                           L.Dropout(0.3), _softmax(2)], "MSE", 0.005, 100, 32, 20),
            "lstm": Recipe(lambda: [lstm(8, sequences=True), L.Flatten(), _softmax(2, 5.0)],
                           "MSE", 0.5, 20, 32, 8),
        },
        "author_music": {
            "feedforward": Recipe(lambda: [L.Flatten(), L.Dense(64, "relu"), L.Dropout(0.5),
                                           _softmax(2, 5.0)], "MSE", 0.01, 10, 16, 10),
            "rnn": Recipe(lambda: [rnn(1, sequences=True), L.Flatten(), L.Dense(64, "relu"),
                                   L.Dropout(0.5), _softmax(2)], "MSE", 0.01, 3, 16, 3),
            "gru": Recipe(lambda: [gru(1, sequences=True), L.Flatten(), L.Dense(64, "relu"),
                                   L.Dropout(0.5), _softmax(2)], "MSE", 0.01, 5, 16, 3),
        },
        "captcha_mnist": {
            "feedforward": Recipe(lambda: [L.Flatten(), L.Dropout(0.2), L.Dense(64, "relu"),
                                           L.Dropout(0.5), _softmax(10, 5.0)], "CCE", 0.02,
                                  100, 32, 20),
            "cnn": Recipe(lambda: [conv(32, (4, 4)), pool((2, 2)), L.Flatten(),
                                   _softmax(10, 5.0)], "CCE", 0.05, 100, 32, 15),
        },
        "digits": {
            "dense": Recipe(lambda: [L.Flatten(), L.Dense(64, "relu"), _softmax(10)], "CCE",
                            0.01, 30, 32, 10),
            "cnn": Recipe(lambda: [conv(8, (3, 3), strides=(1, 1)), pool((2, 2)), L.Flatten(),
                                   _softmax(10)], "CCE", 0.01, 30, 32, 5),
        },
    }


#: Names of the bundled examples, in ``list`` order (the first model of each is the default).
EXAMPLES = ("dummy_boolean", "dummy_string", "dummy_time", "dummy_image", "ptm_protein",
            "author_music", "captcha_mnist", "digits")

DESCRIPTIONS = {
    "dummy_boolean": "11 random booleans; positive when True outnumbers False",
    "dummy_string": "12 letters of ATGC; positive when the first and last letters match",
    "dummy_time": "128-step noisy series; positive when a sine hides in the noise",
    "dummy_image": "28x28 grey images; positive when a row and a column are blanked",
    "ptm_protein": "21-residue peptides, O-GlcNAcylated or not (download, or --synthetic)",
    "author_music": "1 s guitar clips at 10 kHz, one author or not (download, or --synthetic)",
    "captcha_mnist": "28x28 hand-written digits, 10 classes (download, or --synthetic)",
    "digits": "scikit-learn's 8x8 digits, 10 classes (needs scikit-learn)",
}


class CLIError(Exception):
    """An error reported as one line on stderr (exit status 1)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, status 2, no usage dump
        self.exit(2, f"epynn-jax: error: {message} (see epynn-jax --help)\n")


def _positive(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, "
                                             f"got {text!r}") from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, "
                                             f"got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the command."""
    parser = _Parser(prog="epynn-jax", description="Train EpyNN's examples with JAX; "
                     "inspect and use model files.")
    from epynn_jax import __version__

    parser.add_argument("--version", action="version", version=f"epynn-jax {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("list", help="list the bundled examples and their models")

    train = sub.add_parser("train", help="train a bundled example")
    train.add_argument("example", help="example name (see `epynn-jax list`)")
    train.add_argument("--model", help="which model of the example (default: the first)")
    train.add_argument("--epochs", type=_positive(int), help="epochs (default: the recipe's)")
    train.add_argument("--seed", type=int, default=0, help="seed of data, init and shuffles")
    train.add_argument("--batch-size", type=_positive(int), help="mini-batch size")
    train.add_argument("--lr", type=_positive(float), help="learning rate")
    train.add_argument("--out", default="epynn-jax-out", help="folder for the model and plot")
    train.add_argument("--quick", action="store_true", help="small data and few epochs")
    train.add_argument("--synthetic", action="store_true",
                       help="train download examples on a synthetic stand-in")
    train.add_argument("--cache-dir", help="download cache (default $EPYNN_JAX_DATA or "
                       "~/.cache/epynn_jax)")
    train.add_argument("--no-plot", action="store_true", help="do not write the PNG plot")

    info = sub.add_parser("info", help="describe a model file")
    info.add_argument("model", help="model file")

    predict = sub.add_parser("predict", help="run a model file on an input array")
    predict.add_argument("model", help="model file")
    predict.add_argument("input", help="input array (.npy), shape (m, *input_shape)")
    predict.add_argument("--out", help="write the outputs here (.npy); default: print them")
    return parser


# -- subcommands -----------------------------------------------------------------------------


def _checkpoint():
    try:
        from epynn_jax.io import checkpoint
    except ImportError:
        raise CLIError("model files need epynn_jax.io.checkpoint, which this installation "
                       "lacks") from None
    return checkpoint


def cmd_list(args: argparse.Namespace, out) -> int:
    """Print each example, its models and what its data is."""
    recipes = _examples()
    for name in EXAMPLES:
        models = ", ".join(recipes[name])
        out.write(f"{name:<14} {DESCRIPTIONS[name]}\n{'':<14} models: {models}\n")
    return 0


def _resolve(args: argparse.Namespace) -> tuple[str, Recipe]:
    recipes = _examples()
    if args.example not in recipes:
        raise CLIError(f"unknown example {args.example!r}; known: {', '.join(EXAMPLES)}")
    models = recipes[args.example]
    name = args.model or next(iter(models))
    if name not in models:
        raise CLIError(f"example {args.example} has no model {name!r}; "
                       f"known: {', '.join(models)}")
    return name, models[name]


def cmd_train(args: argparse.Namespace, out) -> int:
    """Train one model of one example; save the model file and the plot."""
    import jax

    from epynn_jax import network
    from epynn_jax.data import examples
    from epynn_jax.io import report
    from epynn_jax.maths.schedules import Schedule

    model_name, recipe = _resolve(args)
    try:
        data, info = examples.prepare(args.example, seed=args.seed, quick=args.quick,
                                      synthetic=args.synthetic, cache=args.cache_dir)
    except examples.DataUnavailable as err:
        hint = " (or run with --synthetic)" if args.example in examples.REMOTES else ""
        raise CLIError(f"{err}{hint}") from None
    epochs = args.epochs or (recipe.quick_epochs if args.quick else recipe.epochs)
    batch = args.batch_size or recipe.batch_size
    lr = args.lr or recipe.learning_rate
    input_shape = data["dtrain"][0].shape[1:]
    net = network.build(recipe.layers(), input_shape)
    key_init, key_fit = jax.random.split(jax.random.key(args.seed))
    params = network.init(net, key_init)
    title = (f"{args.example} / {model_name}: {' -> '.join(layer.name for layer in net.layers)}"
             f"; {recipe.loss}, lr {lr:g}, batch {batch or 'full'}, {epochs} epochs")
    reporter = report.Reporter(epochs, out, every=max(epochs // 10, 1), title=title)
    start = time.perf_counter()
    result = network.fit(net, params, data, epochs=epochs, loss=recipe.loss, batch_size=batch,
                         schedule=Schedule(learning_rate=lr), key=key_fit,
                         callbacks=[reporter])
    seconds = time.perf_counter() - start
    final = report.final_metrics(result.history)
    out.write(f"trained in {seconds:.1f} s; final "
              + ", ".join(f"{m} {s} {v:.4f}" for m, per in final.items() for s, v in per.items())
              + "\n")
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{args.example}_{model_name}"
    metadata = {"example": args.example, "model": model_name, "loss": recipe.loss,
                "learning_rate": lr, "batch_size": batch, "epochs": result.epochs,
                "seed": args.seed, "quick": args.quick, "synthetic": args.synthetic,
                "classes": [c if isinstance(c, (int, float, str)) else str(c)
                            for c in info.get("classes", [])]}
    try:
        checkpoint = _checkpoint()
    except CLIError as err:
        out.write(f"model not saved: {err}\n")
    else:
        path = stem.with_suffix(MODEL_SUFFIX)
        checkpoint.save_model(path, net, result.params, metadata=metadata,
                              history=result.history)
        out.write(f"model saved to {path}\n")
    if not args.no_plot:
        png = report.plot_history(result.history, stem.with_suffix(".png"),
                                  f"{args.example} / {model_name}")
        out.write(f"plot saved to {png}\n" if png else "no plot: matplotlib is not installed\n")
    return 0


def _load(path: str):
    checkpoint = _checkpoint()
    if not Path(path).is_file():
        raise CLIError(f"no such model file: {path}")
    try:
        return checkpoint.load_model(path)
    except (ValueError, OSError) as err:
        raise CLIError(f"cannot read model file {path}: {err}") from None


def cmd_info(args: argparse.Namespace, out) -> int:
    """Print the architecture, parameter shapes, metadata and final metrics of a model file."""
    model = _load(args.model)
    net = model.net
    out.write(f"model file {args.model}\n")
    out.write(f"input shape (m, {', '.join(map(str, net.input_shape))}) -> output shape "
              f"(m, {', '.join(map(str, net.output_shape))})\n")
    total = 0
    for i, (layer, p) in enumerate(zip(net.layers, model.params)):
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in p.items()) or "no parameters"
        total += sum(int(v.size) for v in p.values())
        act = ", ".join(f"{k}={v}" for k, v in layer.activation.items())
        out.write(f"  {i}: {layer.name}{f' ({act})' if act else ''}: {shapes}\n")
    out.write(f"parameters: {total}\n")
    if model.metadata:
        out.write("metadata: " + json.dumps(model.metadata, sort_keys=True, default=str) + "\n")
    if model.history:
        from epynn_jax.io.report import final_metrics

        final = final_metrics(model.history)
        out.write("final metrics: " + ", ".join(f"{m} {s} {v:.4f}" for m, per in final.items()
                                                for s, v in per.items()) + "\n")
    return 0


def cmd_predict(args: argparse.Namespace, out) -> int:
    """Run the model on an input array; print or save the outputs."""
    import numpy as np

    from epynn_jax import network
    from epynn_jax.layers import LayerError

    model = _load(args.model)
    try:
        X = np.load(args.input, allow_pickle=False)
    except FileNotFoundError:
        raise CLIError(f"no such input file: {args.input}") from None
    except (ValueError, OSError) as err:
        raise CLIError(f"cannot read input {args.input} as a .npy array: {err}") from None
    try:
        A = np.asarray(network.predict(model.net, model.params, X))
    except (LayerError, ValueError, TypeError) as err:
        raise CLIError(f"input {args.input}: {err}") from None
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        np.save(args.out, A)
        out.write(f"outputs {A.shape} saved to {args.out}\n")
    else:
        with np.printoptions(precision=4, suppress=True, threshold=200):
            out.write(f"{A}\n")
    return 0


COMMANDS = {"list": cmd_list, "train": cmd_train, "info": cmd_info, "predict": cmd_predict}


def main(argv: Sequence[str] | None = None, out=None, err=None) -> int:
    """Run the command with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    from epynn_jax import config

    config.setup()  # a program, not a library: the compilation cache on (EPYNN_JAX_NO_CACHE=1: off)
    try:
        return COMMANDS[args.command](args, out)
    except CLIError as e:
        err.write(f"epynn-jax {args.command}: error: {e}\n")
    except (ValueError, TypeError, OSError, ArithmeticError) as e:
        # LayerError, DataError, ModelFileError, NonFiniteError (a diverging run), ...
        err.write(f"epynn-jax {args.command}: error: {type(e).__name__}: {e}\n")
    except KeyboardInterrupt:
        err.write(f"epynn-jax {args.command}: interrupted\n")
        return 130
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
