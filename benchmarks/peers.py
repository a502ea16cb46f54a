"""The benchmark workloads written as a user of Flax, Equinox or PyTorch would write them.

``benchmarks/gpu_peers.py`` times these against epynn_jax. Every peer trains the
model of ``benchmarks.suite.WORKLOADS`` (same layer shapes, same activations):

- Dense (and the MLP): Flatten -> Linear(width, relu) -> Linear(classes, softmax)
- CNN: Conv(filters, k x k, stride k, valid, relu) -> max-pool(p x p) -> Flatten
  -> Linear(classes, softmax)
- RNN / LSTM / GRU: the library's recurrent layer (hidden units, the last step's
  hidden state) -> Linear(classes, softmax): ``nnx.RNN`` over ``nnx.SimpleCell`` /
  ``nnx.LSTMCell`` / ``nnx.GRUCell`` in Flax; ``eqx.nn.LSTMCell`` /
  ``eqx.nn.GRUCell`` (and a tanh cell of one ``eqx.nn.Linear``, Equinox has none)
  scanned over time in Equinox; ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``
  (``batch_first=True``; cuDNN on a GPU) in PyTorch.

One epoch, as in the suite (EpyNN's epoch): shuffle the training split, train
on its ``n_train // batch`` full batches (MSE summed over the samples of a
batch and averaged over the two outputs, as EpyNN's MSE; plain SGD at
``suite.LEARNING_RATE``), then evaluate both splits (accuracy and MSE) and
fetch those four numbers to the host. The JAX peers compile the whole epoch
as one ``jax.jit`` function (shuffle with a key, ``lax.scan`` over the
batches, ``optax.sgd``, the evaluation), as a careful JAX user would; PyTorch
runs its ordinary Python loop on the device (``torch.randperm`` on the device,
``zero_grad`` / ``backward`` / ``optim.SGD.step`` per batch).

Precision: ``policy='float32'`` or ``'bfloat16'``. bfloat16 is each library's
usual mixed precision: Flax modules with ``dtype=bfloat16,
param_dtype=float32``; Equinox casts its float32 parameters and the input to
bfloat16 inside the loss (gradients flow back to float32); PyTorch runs the
forward under ``torch.autocast(dtype=torch.bfloat16)``. The softmax, the loss
and the metrics are float32 everywhere. For float32, PyTorch is set to
``torch.set_float32_matmul_precision('high')`` (TF32 products on GPUs that
have them), the counterpart of JAX's default matmul precision on those GPUs.

Interface: :func:`available` says which peers can run here (a missing package
gives a reason, never an ImportError), :func:`make_epoch` builds one. Every
package is imported lazily, inside these functions.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import Any

from benchmarks.suite import LEARNING_RATE

PEERS = ("flax", "equinox", "torch")
POLICIES = ("float32", "bfloat16")
#: the modules each peer imports (the first one names the package in the skip note)
MODULES = {"flax": ("flax", "flax.nnx"), "equinox": ("equinox",), "torch": ("torch",)}

Data = dict[str, tuple[Any, Any]]
"""``{'dtrain': (X, Y), 'dval': (X, Y)}``: float32 NumPy arrays, X (m, steps, features)
or (m, side, side, 1), Y one-hot (m, classes), 2 classes unless the workload says."""


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:  # a parent package is missing
        return True


def available() -> dict[str, str | None]:
    """``{peer: None}`` for a peer that can run here, ``{peer: 'flax not installed'}``
    (the reason) for one that cannot."""
    out: dict[str, str | None] = {}
    for peer in PEERS:
        missing = [m for m in MODULES[peer] if _missing(m)]
        out[peer] = f"{missing[0]} not installed" if missing else None
    return out


def make_epoch(impl: str, cfg: dict, policy: str, data: Data) -> tuple[Any, Callable]:
    """``(state, epoch)`` of peer ``impl`` for the workload ``cfg`` (a
    ``suite.WORKLOADS`` entry, already sized) under ``policy``.

    ``epoch(state) -> (state, scores)`` runs one epoch (train, then evaluate every
    split of ``data``) and returns when it has finished: ``scores`` is
    ``{split: (accuracy, mse)}`` as Python floats, fetched from the device.
    """
    if impl not in PEERS:
        raise ValueError(f"impl: one of {', '.join(PEERS)}; got {impl!r}")
    if policy not in POLICIES:
        raise ValueError(f"policy: one of {', '.join(POLICIES)}; got {policy!r}")
    why = available()[impl]
    if why:
        raise ModuleNotFoundError(why)
    if impl == "torch":
        return _torch_epoch(cfg, policy, data)
    params, apply = (_flax_model if impl == "flax" else _equinox_model)(cfg, policy)
    return _jax_epoch(params, apply, data, min(cfg["batch"], cfg["n_train"]))


# -- JAX peers: one jitted epoch around a pure apply(params, X) -----------------------------


def _jax_epoch(params, apply: Callable, data: Data, batch: int):
    """The compiled epoch of a JAX peer, given its parameters (a pytree of float32
    arrays) and ``apply(params, X) -> A`` (the (m, classes) float32 softmax output)."""
    import jax
    import jax.numpy as jnp
    import optax

    opt = optax.sgd(LEARNING_RATE)
    n_train = data["dtrain"][0].shape[0]
    nb = max(n_train // batch, 1)

    def loss(p, X, Y):
        return jnp.sum(jnp.mean((Y - apply(p, X)) ** 2, axis=-1))

    @jax.jit
    def epoch(state, splits):
        p, o, key = state
        key, sub = jax.random.split(key)
        X, Y = splits["dtrain"]
        idx = jax.random.permutation(sub, X.shape[0])[: nb * batch].reshape(nb, batch)

        def step(carry, i):
            p, o = carry
            g = jax.grad(loss)(p, X[i], Y[i])
            updates, o = opt.update(g, o, p)
            return (optax.apply_updates(p, updates), o), None

        (p, o), _ = jax.lax.scan(step, (p, o), idx)
        scores = {}
        for name, (Xs, Ys) in splits.items():
            A = apply(p, Xs)
            scores[name] = jnp.stack([jnp.mean(jnp.argmax(A, -1) == jnp.argmax(Ys, -1)),
                                      jnp.mean((Ys - A) ** 2)])
        return (p, o, key), scores

    splits = jax.block_until_ready(jax.device_put(data))
    state = jax.block_until_ready((params, opt.init(params), jax.random.key(1)))

    def run(state):
        state, scores = epoch(state, splits)
        return state, {k: tuple(float(x) for x in jax.device_get(v)) for k, v in scores.items()}

    return state, run


def _classes(cfg: dict) -> int:
    """The output units: the workload's classes (2 unless it says, as ``suite.make_data``)."""
    return cfg.get("classes", 2)


def _softmax32(logits):
    import jax
    import jax.numpy as jnp

    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


def _flax_model(cfg: dict, policy: str):
    """``(params, apply)`` of the workload as Flax NNX modules (``nnx.split``: the
    parameters train as a plain pytree, ``nnx.merge`` inside the traced loss)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    kw = dict(dtype=jnp.bfloat16 if policy == "bfloat16" else jnp.float32,
              param_dtype=jnp.float32)
    rngs = nnx.Rngs(0)
    kind = cfg["kind"]

    class Model(nnx.Module):
        def __init__(self):
            if kind == "dense":
                self.hidden = nnx.Linear(cfg["steps"] * cfg["features"], cfg["width"],
                                         rngs=rngs, **kw)
                self.out = nnx.Linear(cfg["width"], _classes(cfg), rngs=rngs, **kw)
            elif kind == "cnn":
                k, p = cfg["kernel"], cfg["pool"]
                o = (cfg["side"] - k) // k + 1
                self.conv = nnx.Conv(1, cfg["filters"], (k, k), strides=(k, k),
                                     padding="VALID", rngs=rngs, **kw)
                self.out = nnx.Linear((o // p) ** 2 * cfg["filters"], _classes(cfg),
                                      rngs=rngs, **kw)
            else:
                cell = {"rnn": nnx.SimpleCell, "lstm": nnx.LSTMCell, "gru": nnx.GRUCell}[kind]
                self.rnn = nnx.RNN(cell(cfg["features"], cfg["hidden"], rngs=rngs, **kw))
                self.out = nnx.Linear(cfg["hidden"], _classes(cfg), rngs=rngs, **kw)

        def __call__(self, X):
            if kind == "dense":
                H = jax.nn.relu(self.hidden(X.reshape(X.shape[0], -1)))
            elif kind == "cnn":
                p = cfg["pool"]
                H = nnx.max_pool(jax.nn.relu(self.conv(X)), (p, p), strides=(p, p))
                H = H.reshape(H.shape[0], -1)
            else:
                h = jnp.zeros((X.shape[0], cfg["hidden"]), kw["dtype"])
                carry = (h, h) if kind == "lstm" else h  # LSTMCell's carry is (c, h)
                H = self.rnn(X, initial_carry=carry)[:, -1]  # (batch, time, hidden): last step
            return _softmax32(self.out(H))

    graphdef, params, rest = nnx.split(Model(), nnx.Param, ...)

    def apply(params, X):
        return nnx.merge(graphdef, params, rest)(X)

    return params, apply


@functools.cache
def _equinox_classes():
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    class TanhCell(eqx.Module):
        """The plain RNN cell Equinox does not ship: h' = tanh([x h] . W + b)."""

        linear: eqx.nn.Linear
        hidden_size: int = eqx.field(static=True)

        def __init__(self, input_size: int, hidden_size: int, *, key):
            self.linear = eqx.nn.Linear(input_size + hidden_size, hidden_size, key=key)
            self.hidden_size = hidden_size

        def __call__(self, x, h):
            return jnp.tanh(self.linear(jnp.concatenate([x, h])))

    class DenseNet(eqx.Module):
        hidden: eqx.nn.Linear
        out: eqx.nn.Linear

        def __call__(self, x):  # one sample
            return self.out(jax.nn.relu(self.hidden(x.reshape(-1))))

    class ConvNet(eqx.Module):
        conv: eqx.nn.Conv2d
        pool: eqx.nn.MaxPool2d
        out: eqx.nn.Linear

        def __call__(self, x):  # one sample, (channels, rows, columns)
            return self.out(self.pool(jax.nn.relu(self.conv(x))).reshape(-1))

    class RecurrentNet(eqx.Module):
        cell: eqx.Module
        out: eqx.nn.Linear
        lstm: bool = eqx.field(static=True)

        def __call__(self, xs):  # one sequence, (steps, features)
            h = jnp.zeros(self.out.in_features, xs.dtype)
            init = (h, h) if self.lstm else h

            def f(carry, x):
                return self.cell(x, carry), None

            carry, _ = jax.lax.scan(f, init, xs)
            return self.out(carry[0] if self.lstm else carry)

    return TanhCell, DenseNet, ConvNet, RecurrentNet


def _equinox_model(cfg: dict, policy: str):
    """``(params, apply)`` of the workload as Equinox modules, vmapped over the batch
    (``eqx.partition``: the float arrays train, the rest is static)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    TanhCell, DenseNet, ConvNet, RecurrentNet = _equinox_classes()
    k1, k2 = jax.random.split(jax.random.key(0))
    kind = cfg["kind"]
    channels_first = kind == "cnn"
    if kind == "dense":
        model = DenseNet(eqx.nn.Linear(cfg["steps"] * cfg["features"], cfg["width"], key=k1),
                         eqx.nn.Linear(cfg["width"], _classes(cfg), key=k2))
    elif kind == "cnn":
        k, p = cfg["kernel"], cfg["pool"]
        o = (cfg["side"] - k) // k + 1
        model = ConvNet(eqx.nn.Conv2d(1, cfg["filters"], k, stride=k, key=k1),
                        eqx.nn.MaxPool2d(p, p),
                        eqx.nn.Linear((o // p) ** 2 * cfg["filters"], _classes(cfg), key=k2))
    else:
        cell = {"rnn": TanhCell, "lstm": eqx.nn.LSTMCell, "gru": eqx.nn.GRUCell}[kind]
        model = RecurrentNet(cell(cfg["features"], cfg["hidden"], key=k1),
                             eqx.nn.Linear(cfg["hidden"], _classes(cfg), key=k2), kind == "lstm")
    params, static = eqx.partition(model, eqx.is_inexact_array)
    low = jnp.bfloat16 if policy == "bfloat16" else None

    def apply(params, X):
        m = eqx.combine(params, static)
        if low is not None:  # mixed precision: compute in bfloat16, parameters stay float32
            m = jax.tree.map(lambda a: a.astype(low) if eqx.is_inexact_array(a) else a, m)
            X = X.astype(low)
        if channels_first:
            X = jnp.moveaxis(X, -1, 1)  # NHWC data -> the (C, H, W) samples Conv2d takes
        return _softmax32(jax.vmap(m)(X))

    return params, apply


# -- PyTorch ------------------------------------------------------------------------------


def _torch_model(cfg: dict):
    from torch import nn

    kind = cfg["kind"]
    if kind == "dense":
        return nn.Sequential(nn.Flatten(), nn.Linear(cfg["steps"] * cfg["features"], cfg["width"]),
                             nn.ReLU(), nn.Linear(cfg["width"], _classes(cfg)))
    if kind == "cnn":
        k, p = cfg["kernel"], cfg["pool"]
        o = (cfg["side"] - k) // k + 1
        return nn.Sequential(nn.Conv2d(1, cfg["filters"], k, stride=k), nn.ReLU(),
                             nn.MaxPool2d(p), nn.Flatten(),
                             nn.Linear((o // p) ** 2 * cfg["filters"], _classes(cfg)))

    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
            self.rnn = cls(cfg["features"], cfg["hidden"], batch_first=True)
            self.out = nn.Linear(cfg["hidden"], _classes(cfg))

        def forward(self, x):
            y, _ = self.rnn(x)  # (batch, time, hidden)
            self.computed_in = str(y.dtype).removeprefix("torch.")  # autocast's choice
            return self.out(y[:, -1])

    return Recurrent()


def _torch_epoch(cfg: dict, policy: str, data: Data):
    """PyTorch's usual training loop on the device (cuDNN RNNs and convolutions on a GPU)."""
    import torch

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    model = _torch_model(cfg).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    cnn = cfg["kind"] == "cnn"

    def put(X):
        t = torch.as_tensor(X, dtype=torch.float32, device=dev)
        return t.permute(0, 3, 1, 2).contiguous() if cnn else t  # NHWC -> NCHW

    splits = {k: (put(X), torch.as_tensor(Y, dtype=torch.float32, device=dev))
              for k, (X, Y) in data.items()}
    batch = min(cfg["batch"], cfg["n_train"])
    nb = max(splits["dtrain"][0].shape[0] // batch, 1)
    bf16 = policy == "bfloat16"

    def forward(X):
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(X)
        return torch.softmax(logits.float(), dim=-1)

    def run(state):
        X, Y = splits["dtrain"]
        model.train()
        idx = torch.randperm(X.shape[0], device=dev)[: nb * batch].view(nb, batch)
        for i in range(nb):
            b = idx[i]
            loss = ((Y[b] - forward(X[b])) ** 2).mean(dim=-1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        scores = {}
        with torch.no_grad():
            for name, (Xs, Ys) in splits.items():
                A = forward(Xs)
                scores[name] = torch.stack([
                    (A.argmax(-1) == Ys.argmax(-1)).float().mean(), ((Ys - A) ** 2).mean()])
        return state, {k: tuple(v.tolist()) for k, v in scores.items()}  # .tolist() syncs

    return model, run


def describe(impl: str, state: Any) -> str | None:
    """What a run of ``impl`` did that its name does not say, after one epoch: for a
    PyTorch recurrent model, the dtype its ``nn.RNN``/``nn.LSTM``/``nn.GRU`` computed in
    (autocast decides, and cuDNN has bfloat16 RNNs only from 9.13 on)."""
    if impl == "torch" and hasattr(state, "computed_in"):
        return f"{type(state.rnn).__name__} computed in {state.computed_in}"
    return None


def versions() -> dict[str, str]:
    """The installed peers' versions (and PyTorch's CUDA device, if any)."""
    out = {}
    for peer, why in available().items():
        if why:
            continue
        mod = importlib.import_module(MODULES[peer][0])
        out[peer] = getattr(mod, "__version__", "?")
        if peer == "torch":
            out["torch_device"] = (mod.cuda.get_device_name(0) if mod.cuda.is_available()
                                   else "cpu")
            out["cudnn"] = str(mod.backends.cudnn.version()) if mod.cuda.is_available() else "-"
    return out
