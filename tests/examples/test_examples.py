"""Every example script runs at small size (``--quick``) and reaches its stated accuracy.

The scripts run in this process (``main(argv)``), so JAX starts once. The
accuracies are validation accuracies on the example's own (synthetic or
bundled) data after the quick run; ``None`` marks a model whose lesson is
that it does *not* generalize (it must still train to finite losses).
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path

import pytest

from . import fixtures

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

#: example -> {model: minimum final validation accuracy after --quick}
EXPECTED = {
    "dummy_boolean": {"perceptron": 0.8},
    # first == last letter is not linearly separable: every model sits near the
    # majority class (about 0.74), as in EpyNN's notebook
    "dummy_string": {"feedforward": 0.65, "rnn": 0.65, "lstm": 0.65, "gru": 0.65},
    "dummy_time": {"feedforward": 0.85, "dropout": 0.85, "rnn": 0.7},
    # the dense net overfits (train up, validation near chance): EpyNN's lesson
    "dummy_image": {"feedforward": None, "cnn": 0.65},
    "ptm_protein": {"feedforward": 0.85, "lstm": 0.85},
    "author_music": {"feedforward": 0.9, "rnn": 0.6, "gru": 0.7},
    "captcha_mnist": {"feedforward": 0.6, "cnn": 0.5},
    "digits": {"dense": 0.9, "cnn": 0.9},
}
DOWNLOADS = ("ptm_protein", "author_music", "captcha_mnist")

#: What CI trains: every example at least once and every layer family (Dense, Dropout,
#: LSTM, RNN, Convolution + Pooling, GRU); ptm_protein runs through its real
#: download path below. The other models run with EPYNN_JAX_ALL_EXAMPLES=1
#: (about 3 s of compilation each on 2 cores).
CI_MODELS = {("dummy_boolean", "perceptron"), ("dummy_string", "lstm"), ("dummy_time", "rnn"),
             ("dummy_image", "cnn"), ("author_music", "gru"), ("captcha_mnist", "feedforward"),
             ("digits", "dense"), ("digits", "cnn")}
ALL = os.environ.get("EPYNN_JAX_ALL_EXAMPLES") == "1"


def load_example(name: str):
    """Import examples/NAME.py as a module (skip when a layer it needs is absent)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith(("epynn_jax.layers.", "sklearn")):
            pytest.skip(f"examples/{name}.py needs {err.name}, not installed here")
        raise
    return module


CASES = [(ex, model) for ex, models in EXPECTED.items() for model in models]


@pytest.mark.parametrize("example,model", CASES, ids=[f"{e}-{m}" for e, m in CASES])
def test_example_reaches_its_stated_accuracy(example, model, capsys):
    if not (ALL or (example, model) in CI_MODELS):
        pytest.skip("not in the CI set; run with EPYNN_JAX_ALL_EXAMPLES=1")
    if example == "digits":
        pytest.importorskip("sklearn", reason="the digits example needs scikit-learn")
    module = load_example(example)
    argv = ["--quick", "--model", model] + (["--synthetic"] if example in DOWNLOADS else [])
    final = module.main(argv)[model]
    out = capsys.readouterr().out
    assert "epoch" in out and f"{model}:" in out  # the per-epoch table and the summary
    for per_split in final.values():
        assert all(math.isfinite(v) for v in per_split.values()), final
    minimum = EXPECTED[example][model]
    if minimum is not None:
        assert final["accuracy"]["dval"] >= minimum, final


def test_every_example_script_is_covered():
    scripts = {p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_")}
    assert scripts == set(EXPECTED)


@pytest.mark.parametrize("example", DOWNLOADS)
def test_download_example_without_data_says_so_and_exits_nonzero(example, tmp_path, capsys):
    module = load_example(example)
    with pytest.raises(SystemExit) as exit_:
        module.main(["--quick", "--cache-dir", str(tmp_path),
                     "--url", fixtures.url(tmp_path / "absent.tar")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "real data is not available" in err and "--synthetic" in err


def test_ptm_protein_trains_on_real_loading_code(tmp_path, capsys):
    """The real path end to end: file:// download, checksum, extraction, reading, training."""
    module = load_example("ptm_protein")
    archive = fixtures.ptm_archive(tmp_path, n_pos=150, n_neg=150)
    from epynn_jax.data.examples import sha256_of

    final = module.main(["--quick", "--model", "feedforward", "--epochs", "15",
                         "--cache-dir", str(tmp_path / "cache"), "--url", fixtures.url(archive),
                         "--sha256", sha256_of(archive)])["feedforward"]
    # positives carry a proline after the centre: separable
    assert final["accuracy"]["dval"] >= 0.9, final


def test_checksum_mismatch_stops_a_download_example(tmp_path, capsys):
    module = load_example("captcha_mnist")
    archive = fixtures.mnist_archive(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        module.main(["--quick", "--cache-dir", str(tmp_path / "c"), "--url",
                     fixtures.url(archive), "--sha256", "0" * 64])
    assert exit_.value.code == 2 and "SHA-256" in capsys.readouterr().err


def test_bad_options_are_usage_errors(capsys):
    module = load_example("dummy_boolean")
    for argv, named in ((["--epochs", "0"], "--epochs"), (["--model", "nope"], "--model"),
                        (["--frobnicate"], "--frobnicate"), (["--seed", "-1"], "--seed"),
                        (["--seed", str(2**32)], "--seed")):
        with pytest.raises(SystemExit) as exit_:
            module.main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert named in err and "Traceback" not in err
