"""``EpyNN(layers, name='EpyNN')``: the model, as EpyNN's class, trained by compiled epochs.

Kept from EpyNN: the constructor, ``initialize(loss, se_hPars, metrics, seed,
params, end)`` with its dry run on the first shuffled batch, ``train(epochs,
verbose, init_logs)``, ``evaluate``, ``forward``, ``backward``, ``predict``,
``report``, ``batch_report``, ``plot``, ``write``, and the attributes
(``layers``, ``embedding``, ``uname``, ``network``, ``metrics``, ``output``,
``training_loss``, ``se_hPars``, ``seed``, ``np_rng``, ``e``, ``epochs``,
``verbose``, ...). Seeds: layer *i* (the Embedding is 0) draws from
``numpy.random.default_rng(seed + i + 1)``, so initial weights and batch
order are EpyNN's.

Training does not call the layers' methods batch by batch: each epoch is one
compiled call of the functional core (see :mod:`epynn_jax.compat.network._train`),
and the layers' dicts are refreshed afterwards (``p`` at once; ``fc``,
``bc`` and ``g`` of the last training batch when first read).
"""

from __future__ import annotations

import contextlib
import numbers
import time
import weakref
from collections.abc import Mapping

import jax
import numpy as np

from epynn_jax.compat import _modelfile, _report
from epynn_jax.compat._builtin import BuiltinLayer, hpars_of, to_device, to_device_array, to_host
from epynn_jax.compat._traced import try_trace
from epynn_jax.compat.commons.io import encode_dataset, scale_features
from epynn_jax.compat.commons.loss import loss_functions
from epynn_jax.compat.commons.models import dataSet
from epynn_jax.compat.commons.schedule import schedule_lrate
from epynn_jax.compat.network import _train
from epynn_jax.compat.settings import se_hPars as _DEFAULT_HPARS
from epynn_jax.errors import add_note
from epynn_jax.layers.base import LayerError, float_dtype
from epynn_jax.maths import metrics as metrics_lib
from epynn_jax.network import checks
from epynn_jax.network import epoch as core
from epynn_jax.network.model import Network

__all__ = ["EpyNN"]

_TABLE_ROWS = 11


def _is_builtin(layer) -> bool:
    return isinstance(layer, BuiltinLayer)


class EpyNN:
    """A linear stack of layers whose first is an ``Embedding`` holding the data.

    ``verbose=False`` silences every print of this model (``None`` follows
    :func:`epynn_jax.compat.set_quiet` and ``EPYNN_JAX_QUIET``).
    """

    def __init__(self, layers, name: str = "EpyNN", verbose: bool | None = None) -> None:
        if not isinstance(layers, (list, tuple)) or not layers:
            raise TypeError("EpyNN: layers must be a non-empty list of layers")
        if not hasattr(layers[0], "dsets"):
            raise TypeError(f"EpyNN: the first layer must be an Embedding, got "
                            f"{type(layers[0]).__name__}")
        self.layers = list(layers)
        self.embedding = self.layers[0]
        self.ts = int(time.time())
        self.uname = f"{self.ts}_{name}"
        self.initialized = False
        self._print = verbose
        self._pending = None
        self._done_epochs = 0
        self.e = 0
        self.diverged = None

    # -- setup --------------------------------------------------------------------------

    def initialize(self, loss: str = "MSE", se_hPars: dict = _DEFAULT_HPARS,
                   metrics: list = ("accuracy",), seed: int | None = None, params: bool = True,
                   end: str = "\n") -> None:
        """Check the model with a dry run (forward, loss', backward, gradients; no update).

        ``se_hPars`` is copied (never mutated); layers without their own get the
        model's; ``None`` means the defaults (``epynn.settings.se_hPars``).
        ``seed=None`` leaves weights unseeded; any int in [0, 2**63) (0 included)
        seeds layer i with ``seed + i + 1``. ``params=False`` keeps existing
        parameters. Raises (does not exit) when a layer rejects its input, or
        when labels are outside the loss's range (BCE/CCE: [0, 1]; MSLE: > -1).
        """
        seed = _check_seed(seed)
        if se_hPars is None:
            se_hPars = _DEFAULT_HPARS
        if not isinstance(se_hPars, Mapping):
            raise TypeError("EpyNN.initialize: se_hPars must be a dict of hyperparameters "
                            "(such as epynn.settings.se_hPars) or None for the defaults, got "
                            f"{type(se_hPars).__name__}")
        self.network = {id(layer): {} for layer in self.layers}
        names = [*metrics_lib.check_metrics(metrics, "EpyNN.initialize: metrics"), loss]
        metrics_lib.check_metric(loss)
        self.metrics = {m: [[], [], []] for m in names}
        last = self.layers[-1]
        if "activate" not in getattr(last, "activation", {}):
            raise ValueError(f"EpyNN: the last layer ({type(last).__name__}) has no activation; "
                             "end the network with e.g. a Dense layer")
        self.output = last.activation["activate"]
        self.training_loss = loss_functions(loss, self.output)
        self.loss = loss
        self.se_hPars = dict(se_hPars)
        self._owned_hpars = [self.se_hPars]  # the copies train may complete in place
        for layer in self.layers:
            own = layer.__dict__.setdefault("_user_hPars", layer.se_hPars)
            layer._base_hPars = dict(own) if own else self.se_hPars
            layer.se_hPars = layer._base_hPars
            if own:
                self._owned_hpars.append(layer._base_hPars)
        self.seed = seed
        self._assign_seeds(seed)
        self._pending = None
        self._done_epochs = 0
        if not self.embedding.dsets:
            raise ValueError("EpyNN: the Embedding holds no data (give it X_data and Y_data)")
        try:
            self._dry_run(params, end)
        except Exception as err:
            self._debug_failure(err)
            raise
        self.e = 0
        self.initialized = True

    def _assign_seeds(self, seed) -> None:
        self.np_rng = np.random.default_rng(seed)
        for i, layer in enumerate(self.layers):
            s = None if seed is None else int(seed) + i + 1
            layer.o["seed"] = s
            layer.np_rng = np.random.default_rng(s)
            if _is_builtin(layer):
                layer._model = weakref.ref(self)
        self._key = (jax.random.key(np.random.default_rng().integers(2**31)) if seed is None
                     else checks.check_key(seed, "EpyNN.initialize: seed"))

    def _dry_run(self, params: bool, end: str) -> None:
        say = lambda msg: _report.say(msg, self, end=end)  # noqa: E731
        self.embedding.training_batches(init=True)
        batch = self.embedding.batch_dtrain[0]
        say(f"{'--- EpyNN Check --- ':<100}")
        if all(_is_builtin(layer) for layer in self.layers):
            self._dry_run_compiled(batch, params, say)
        else:
            self._dry_run_eager(batch, params, say)
        self._failing = None
        say(f"{'--- EpyNN Check OK! --- ':<100}")

    def _check_layer(self, i: int, layer, say) -> dict:
        self._failing = i
        layer.name = type(layer).__name__
        entry = self.network[id(layer)]
        entry.update(Layer=layer.name, Activation=layer.activation, Dimensions=layer.d)
        gates = [k for k, v in layer.activation.items() if v == "softmax"]
        if gates and layer.name != "Dense":
            raise ValueError(f"layer {i} ({layer.name}): {', '.join(gates)}='softmax': softmax "
                             "can only be used in Dense")
        say(f"Layer: {layer.name}")
        layer.e = 0
        return entry

    def _dry_run_compiled(self, batch, params: bool, say) -> None:
        """Shapes layer by layer, then one compiled forward + backward of the first batch."""
        shape = tuple(np.shape(batch.X))
        for i, layer in enumerate(self.layers):
            entry = self._check_layer(i, layer, say)
            with self._scalar_samples(i, layer, shape):
                layer.compute_shapes(jax.ShapeDtypeStruct(shape, float_dtype()))
            if params:
                layer.initialize_parameters()
            shape = (shape[0], *layer._fl.output_shape)
            say(f"forward: {layer.name} shape: {shape}")
            entry["FW_Shapes"] = layer.fs
        self._failing = None
        self._check_labels(shape[1:])
        net = Network(tuple(layer._fl for layer in self.layers))
        params_d = tuple(to_device(layer.p) for layer in self.layers)
        Xb, Yb = checks.as_floats([batch.X, batch.Y], ["Embedding: batch X", "Embedding: batch Y"])
        # Trace (no compilation) to check every shape; the values are computed on first read.
        fcs, bcs, _ = jax.eval_shape(
            lambda p, X, Y, k: core.step_caches(net, self.loss, p, X, Y, k),
            params_d, Xb, Yb, self._key)
        key = self._key
        self._pending = lambda: (core.step_caches(net, self.loss, params_d, Xb, Yb, key), Xb)
        self._pending_skip = 0
        for layer, fc, bc in reversed(list(zip(self.layers, fcs, bcs))):
            layer.fs.update({k: tuple(v.shape) for k, v in fc.items()})
            layer.bs.update({k: tuple(v.shape) for k, v in bc.items()})
            self.network[id(layer)]["BW_Shapes"] = layer.bs
            say(f"backward: {layer.name} shape: {layer.bs.get('dX')}")

    def _dry_run_eager(self, batch, params: bool, say) -> None:
        """Layer by layer, each method called in turn (models with custom layers)."""
        A, Y = batch.X, batch.Y
        shapes = []
        for i, layer in enumerate(self.layers):
            entry = self._check_layer(i, layer, say)
            shapes.append(tuple(np.shape(A)))
            with self._scalar_samples(i, layer, np.shape(A)):
                layer.compute_shapes(A)
            if params:
                layer.initialize_parameters()
            if _is_builtin(layer):
                layer._training = True
            try:
                A = layer.forward(A)
            finally:
                if _is_builtin(layer):
                    layer._training = False
            say(f"forward: {layer.name} shape: {np.shape(A)}")
            entry["FW_Shapes"] = layer.fs
        self._check_labels(np.shape(A)[1:])
        dX = self.training_loss(Y, A, deriv=True)
        for i in reversed(range(len(self.layers))):
            self._failing = i
            layer = self.layers[i]
            dX = layer.backward(dX)
            _train.check_dX(layer, i, dX, shapes[i], "EpyNN.initialize")
            self.network[id(layer)]["BW_Shapes"] = layer.bs
            layer.compute_gradients()
            say(f"backward: {layer.name} shape: {np.shape(dX)}")
        for layer, shape in zip(self.layers, shapes):
            if not _is_builtin(layer):
                adapter, reason = try_trace(layer, shape, float_dtype())
                layer._adapter = adapter
                layer._mode = ("compiled" if adapter is not None else "eager", reason)
                say(f"{layer.name}: runs {layer._mode[0]} ({reason})")

    @contextlib.contextmanager
    def _scalar_samples(self, i: int, layer, shape: tuple[int, ...]):
        """Say what is wrong when the layer after the Embedding refuses X_data of one number
        per sample, shape (m,) (its own error would advise a layer, not the data's shape)."""
        try:
            yield
        except LayerError:
            if i != 1 or len(shape) != 1 or not _is_builtin(layer):
                raise
            raise LayerError(
                f"EpyNN.initialize: the Embedding's X_data has one number per sample (a "
                f"batch of shape {tuple(shape)}); layer 1 ({type(layer).__name__}) takes "
                "samples of features: X_data must have a sample axis first and the features "
                "after it, shape (m, n, ...) (X_data.reshape(-1, 1) for one feature per "
                "sample)") from None

    def _check_labels(self, output: tuple[int, ...]) -> None:
        """Raise unless every data set's labels have the output's sample shape (EpyNN
        would broadcast a label column against several output units, and score it
        as if it were one-hot)."""
        last = self.layers[-1]
        for dset in self.embedding.dsets:
            got = tuple(np.shape(dset.Y)[1:])
            if got != tuple(output):
                raise ValueError(
                    f"EpyNN.initialize: the labels of {dset.name} (Y of sample shape {got}) "
                    f"do not fit the output of layer {len(self.layers) - 1} "
                    f"({type(last).__name__}, sample shape {tuple(output)}); one-hot encode "
                    "class labels (Embedding(..., Y_encode=True)) or give the last layer "
                    "as many units as Y has columns")
        self._check_label_range("EpyNN.initialize")

    def _check_label_range(self, where: str) -> None:
        """Raise unless every data set's labels are where the training loss is defined
        (the core's check: BCE and CCE in [0, 1], MSLE above -1); EpyNN trains on, to a
        negative BCE or a NaN MSLE."""
        for dset in self.embedding.dsets:
            checks.check_label_range(np.asarray(dset.Y), self.loss,
                                     f"{where}: the labels of {dset.name} (Y)")

    def _debug_failure(self, err: Exception) -> None:
        i = getattr(self, "_failing", None)
        where = "" if i is None else f" at layer {i} ({type(self.layers[i]).__name__})"
        msg = f"Initialization of EpyNN model failed{where}: {err}"
        if i is not None:
            layer = self.layers[i]
            _report.say(f"\n/!\\ {msg}", self)
            _report.say("Known dimensions: " + ", ".join(f"{k}: {v}" for k, v in layer.d.items()),
                        self)
            _report.say("Known forward shapes: " + ", ".join(
                f"{k}: {v}" for k, v in layer.fs.items()), self)
        if i is not None:  # (else the error says it all)
            add_note(err, msg)

    # -- training -----------------------------------------------------------------------

    def train(self, epochs: int, verbose: int | None = None, init_logs: bool = True, *,
              on_nonfinite: str = "stop", mesh=None) -> None:
        """Train for ``epochs`` more epochs (continuing after the last one trained).

        ``verbose``: add a row to the epoch table every that many epochs
        (default: a tenth of ``epochs``). ``init_logs``: print the data,
        architecture and hyperparameter tables first (no pause).

        Each epoch is the core's compiled epoch (:func:`epynn_jax.network.epoch.run_epoch`)
        with EpyNN's batch order. Two keywords EpyNN does not have:

        - ``on_nonfinite``: when a loss, gradient, update or score becomes NaN or
          inf, ``'stop'`` (default) stops training, keeps the weights of the last
          good epoch, prints one line naming the epoch, batch and layer to stderr
          and sets ``model.diverged`` to the :class:`~epynn_jax.errors.NonFiniteError`;
          ``'raise'`` raises that error instead; ``'ignore'`` trains on as EpyNN does.
        - ``mesh``: a ``jax.sharding.Mesh`` (axis ``'data'``) or a list of devices to
          split every batch over (see :mod:`epynn_jax.network.parallel`).
        """
        if not isinstance(epochs, (int, np.integer)) or isinstance(epochs, bool) or epochs < 1:
            raise ValueError(f"EpyNN.train: epochs must be a positive int, got {epochs!r}")
        if isinstance(verbose, (bool, np.bool_)):  # EpyNN takes True as every epoch
            verbose = 1 if verbose else None
        if verbose is not None and not isinstance(verbose, numbers.Integral):
            raise TypeError("EpyNN.train: verbose must be None or an int (a row of the epoch "
                            f"table every verbose epochs), got {verbose!r:.80}")
        if verbose is not None and verbose < 0:
            raise ValueError("EpyNN.train: verbose must be None or an int >= 0 (a row of the "
                             f"epoch table every verbose epochs; 0: the default), got {verbose}")
        if not self.initialized:
            self.initialize()
        self._refuse_read_model("EpyNN.train", "does not train further")
        self._device_data()  # the data checked (labels in the loss's range) before any change
        if mesh is not None:
            mesh = _train.check_mesh(self, mesh)
        start = self._done_epochs
        self.epochs = start + int(epochs)
        for layer in self.layers:
            held = self._held_hpars(layer)
            completed, layer.lrate = schedule_lrate(held, self.epochs)
            held.update(completed)
            layer.se_hPars = held
        self._sync_activation_hpars()
        if init_logs:
            self._init_report()
        if not verbose:
            verbose = epochs // 10 if epochs >= 10 else 1
        self.verbose = int(verbose)
        self.cts = time.time()
        self._start = start
        self._done_epochs = self.epochs
        _train.train_epochs(self, start, self.epochs, on_nonfinite, mesh)

    def _held_hpars(self, layer) -> dict:
        """The dict of hyperparameters ``layer`` trains with, as in EpyNN: the one it holds
        (the model's, shared by every layer without its own), which each ``train``
        completes in place (``epochs``, ``cycle_number``, and a default ``decay_k`` of
        ``5 / cycle_epochs``). So a continued training keeps the first call's decay
        constant, its rates going on down the same curve, and an edit of any layer's
        ``se_hPars`` reaches the next ``train`` of every layer sharing that dict. The
        dicts are the facade's copies from ``initialize``; one the user assigned since is
        copied first, never mutated."""
        held = layer.se_hPars if layer.se_hPars else self.se_hPars
        owned = self.__dict__.setdefault("_owned_hpars", [])
        if not any(held is d for d in owned):
            held = dict(held)
            owned.append(held)
        return held

    def _sync_activation_hpars(self) -> None:
        """Rebuild each built-in layer whose ``se_hPars`` now hold other activation
        hyperparameters (``softmax_temperature``, ``ELU_alpha``, ``LRELU_alpha``) than
        its functional layer was built with: EpyNN reads them at every forward and
        backward, so an edit after ``initialize`` counts from the next call on."""
        for layer in self.layers:
            fl = getattr(layer, "_fl", None)
            if _is_builtin(layer) and fl is not None and fl.hpars != hpars_of(layer.se_hPars):
                layer._build(fl.input_shape)

    def _device_data(self, where: str = "EpyNN.train") -> dict:
        """``{name: (X, Y)}``: every data set on the device (``dtrain`` first).

        The copy is made once and reused while the Embedding holds the same
        data-set objects and arrays in the same float dtype; those arrays are
        made read-only, so an in-place edit raises instead of training on a
        stale copy (assign new arrays, or a new Embedding, to change the data).
        """
        dt = np.dtype(float_dtype())
        dsets = tuple(self.embedding.dsets)
        owners = (dt, *((d, d.X, d.Y) for d in dsets))
        cached = self.__dict__.get("_dev_data")
        if cached is not None and _same_objects(cached[0], owners):
            return cached[1]
        self._check_label_range(where)  # (labels assigned since initialize)
        for d in dsets:
            d.X.flags.writeable = False
            d.Y.flags.writeable = False
        # the core's placement: one host copy per array, ONE device_put (jnp.asarray
        # compiled a small conversion program per new shape)
        placed = iter(checks.as_floats([a for d in dsets for a in (d.X, d.Y)],
                                       [f"Embedding: {d.name} {w}" for d in dsets for w in "XY"]))
        data = {d.name: (next(placed), next(placed)) for d in dsets}
        self._dev_data = (owners, data)
        return data

    def _device_params(self) -> tuple:
        """Every layer's ``p`` on the device; reused while the layers hold the arrays
        the last training left there (read-only NumPy views, so they cannot change
        in place)."""
        dt = np.dtype(float_dtype())
        cached = self.__dict__.get("_dev_params")
        if cached is not None and cached[0] == dt and len(cached[1]) == len(self.layers) and all(
                layer.p.keys() == host.keys() and all(layer.p[k] is host[k] for k in host)
                for layer, host in zip(self.layers, cached[1])):
            return cached[2]
        return tuple(to_device(layer.p) for layer in self.layers)

    def _store_params(self, params: tuple) -> None:
        """Set every layer's ``p`` to read-only host copies of the device ``params``
        and remember the pair for the next ``train``."""
        hosts = tuple(to_host(p) for p in params)
        for layer, host in zip(self.layers, hosts):
            layer.p.clear()
            layer.p.update(host)
        self._dev_params = (np.dtype(float_dtype()), hosts, params)

    def _set_epoch(self, e: int) -> None:
        self.e = e
        for layer in self.layers:
            layer.e = e

    def _materialize(self) -> None:
        """Fill every built-in layer's ``fc``, ``bc`` and ``g`` from the last training batch
        (replayed by the core on first read; see ``_train``)."""
        pending, skip = self._pending, self._pending_skip
        self._pending = None
        (fcs, bcs, gs), Xb = pending()
        layers = self.layers[skip:]
        if skip:  # the Embedding, left out of the compiled epoch: A = X, dX = dA
            dX = bcs[0]["dX"] if "dX" in bcs[0] else None
            fcs, bcs, gs = (({"X": Xb, "A": Xb}, *fcs),
                            ({"dA": dX, "dX": dX} if dX is not None else {}, *bcs), ({}, *gs))
            layers = self.layers
        for layer, fc, bc, g in zip(layers, fcs, bcs, gs):
            for name, tree in (("fc", fc), ("bc", bc), ("g", g)):
                target = layer.__dict__.get("_" + name, layer.__dict__.get(name))
                target.clear()
                target.update(to_host(tree))
            layer.update_shapes(layer.__dict__.get("_fc", layer.__dict__.get("fc")), layer.fs)
            layer.update_shapes(layer.__dict__.get("_bc", layer.__dict__.get("bc")), layer.bs)
            layer.d["m"] = int(Xb.shape[0])

    def _record(self, scores: dict) -> None:
        for k, dset in enumerate(self.embedding.dsets):
            for m in self.metrics:
                self.metrics[m][k].append(float(scores[dset.name][m]))

    def _set_outputs(self, outputs: dict) -> None:
        for dset in self.embedding.dsets:
            if dset.name in outputs:
                dset.A = outputs[dset.name]
                dset.P = _decide(dset.A, dset.Y.shape[1] > 1)

    # -- EpyNN's per-call methods ---------------------------------------------------------

    def _current_params(self):
        self._sync_activation_hpars()
        plan = _train.plan(self.layers)
        if len(plan) == 1 and plan[0].compiled:  # every layer: placed once per training
            return plan, {0: self._device_params()}
        seg_params = {s: tuple(to_device(self.layers[i].p) for i in seg.indices)
                      for s, seg in enumerate(plan) if seg.compiled}
        return plan, seg_params

    def _check_ready(self, where: str) -> None:
        if not self.initialized:
            raise RuntimeError(f"{where}: the model is not initialized; call "
                               "model.initialize(...) or model.train(...) first")

    def _refuse_read_model(self, where: str, what: str) -> None:
        """Raise if this model came from ``read_model``: its Embedding holds no data."""
        if "_key" not in self.__dict__:  # initialized by read_model, never by initialize()
            raise ValueError(
                f"{where}: a model from read_model {what} (its Embedding holds no data, as "
                "docs/compat.md says; predict(X) runs it on new data); build a model with an "
                "Embedding of data, initialize() it, assign each layer's p from the read "
                "model and use that one")

    def evaluate(self) -> None:
        """Evaluate every data set (no dropout) and append each metric."""
        self._check_ready("EpyNN.evaluate")
        self._refuse_read_model("EpyNN.evaluate", "has no data sets to evaluate")
        _train.check_params(self, "EpyNN.evaluate")
        plan, seg_params = self._current_params()
        outputs, scores = _train.evaluate_sets(self, plan, seg_params,
                                                 self._device_data("EpyNN.evaluate"))
        self._record(scores)
        self._set_outputs(outputs)

    def forward(self, X):
        """The output of every layer in turn (eager, no dropout); sets each layer's ``e``."""
        self._sync_activation_hpars()
        A = X
        for layer in self.layers:
            layer.e = self.e
            A = layer.forward(A)
        return A

    def backward(self, dA) -> None:
        """Per layer, last to first: backward, compute_gradients, update_parameters."""
        dX = dA
        for layer in reversed(self.layers):
            dX = layer.backward(dX)
            layer.compute_gradients()
            layer.update_parameters()

    def predict(self, X_data, X_encode: bool = False, X_scale: bool = False) -> dataSet:
        """Outputs ``A`` and decisions ``P`` for new samples (no dropout).

        ``X_encode`` one-hot encodes with the training vocabulary (an unknown
        element raises ``ValueError``); ``X_scale`` min-max scales the new data
        with its own bounds, as EpyNN does.
        """
        self._check_ready("EpyNN.predict")
        where = "EpyNN.predict: X_data"
        X_data = _samples(X_data, where)
        if X_encode:
            emb = self.embedding
            if not hasattr(emb, "e2i"):
                raise ValueError("predict(X_encode=True): the model was not trained on "
                                 "encoded data (no vocabulary)")
            X_data = np.array(encode_dataset(X_data, emb.e2i, emb.d["e"]))
        if X_scale:
            X_data = scale_features(X_data)
        dset = dataSet(X_data)
        if not dset.active:
            raise ValueError(f"{where} has no samples")
        # the core's check of an input: numbers, finite, placed on the device
        X = checks.as_float_arg(dset.X, where)
        self._check_sample_axis(tuple(X.shape), where)
        _train.check_input(self, tuple(X.shape), where)
        plan, seg_params = self._current_params()
        dset.A = _train.forward_segments(self, plan, seg_params, X)
        dset.P = _decide(dset.A, self._label_columns() > 1)
        return dset

    def _check_sample_axis(self, shape: tuple[int, ...], where: str) -> None:
        """Raise unless ``shape`` has a sample axis before the model's sample shape: one
        sample given alone (``X[0]``) would be read as that many samples."""
        sample = getattr(getattr(self.embedding, "_fl", None), "input_shape", None)
        if sample is not None and len(shape) == len(sample):
            raise ValueError(
                f"{where} of shape {shape} is not a set of samples of shape {tuple(sample)}: "
                f"X_data must have a sample axis first, shape (m, "
                f"{', '.join(map(str, sample))}) (for one sample x: [x] or x[None])")

    def _label_columns(self) -> int:
        Y = getattr(self.embedding.dtrain, "Y", None)
        return int(Y.shape[1]) if Y is not None else int(getattr(self, "_n_label_columns", 1))

    # -- reports ------------------------------------------------------------------------

    def _progress(self, e: int, t0: float, acc, cost) -> None:
        now = time.time()
        last = e == self.epochs - 1
        if _report.is_quiet(self) or not _report.interactive():
            return
        if not last and now - getattr(self, "_last_progress", 0.0) < 0.1:
            return
        self._last_progress = now
        acc = None if acc is None else float(acc)
        cost = None if cost is None else float(cost)
        _report.say(_report.progress_line(e, self.epochs, self._start, t0, acc, cost), self,
                    end="\r")

    def batch_report(self, batch, A) -> None:
        """One overwritable line with the batch's accuracy and cost."""
        acc = float(np.mean(metrics_lib.accuracy(to_device_array(batch.Y),
                                                 to_device_array(A))))
        cost = float(np.mean(self.training_loss(batch.Y, A)))
        _report.say(f"Epoch {self.e} - Batch {batch.name} - Accuracy: {acc:.3f} "
                    f"Cost: {cost:.5f}", self, end="\r")

    def _table_headers(self) -> list[str]:
        heads = ["epoch"]
        heads += [f"lrate\n{layer.name}" for layer in self.layers if layer.p]
        heads += [f"{m}\n{d.name}" for m in self.metrics for d in self.embedding.dsets]
        return heads + ["Experiment"]

    def report(self) -> None:
        """Add this epoch's row to the epoch table; print it every 11 rows and at the end."""
        self._check_ready("EpyNN.report")
        n_sets = len(self.embedding.dsets)
        if not getattr(self, "epochs", 0) or not all(
                self.metrics[m][k] for m in self.metrics for k in range(n_sets)):
            raise RuntimeError("EpyNN.report: no epoch to report; call model.train(...) first")
        verbose = getattr(self, "verbose", None) or 1  # (a read model has none)
        e = self.e
        if e == getattr(self, "_start", 0) or not hasattr(self, "current_logs"):
            self.current_logs = [self._table_headers()]
        last = e == self.epochs - 1
        if e % verbose == 0 or last:
            row = [str(e)]
            row += [f"{layer.lrate[e]:.2e}" for layer in self.layers if layer.p]
            row += [f"{self.metrics[m][k][-1]:.3f}" for m in self.metrics
                    for k in range(len(self.embedding.dsets))]
            self.current_logs.append(row + [self.uname])
        if len(self.current_logs) == _TABLE_ROWS + 1 or last:
            if not _report.is_quiet(self):
                _report.say("\n" + _report.text_table(self.current_logs), self)
            self.current_logs = [self.current_logs[0]]

    def _init_report(self) -> None:
        from epynn_jax.compat.network.logs import init_report
        _report.say(init_report(self), self)

    def plot(self, pyplot: bool = True, path=None) -> None:
        """Plot every metric per data set (matplotlib, headless-safe); save a PNG.

        ``path=None`` saves ``./plots/<uname>.png``, a string saves there, ``False``
        does not save.
        """
        if pyplot:
            from epynn_jax.compat.commons.plot import pyplot_metrics
            pyplot_metrics(self, path)

    def write(self, path: str | None = None) -> None:
        """Save the model (weights, architecture, vocabulary, metrics; no pickle), atomically.

        Raises ``ValueError`` naming the layer and key for NaN or inf weights,
        before anything is written.
        """
        _modelfile.write_model(self, path)


def _samples(data, where: str) -> np.ndarray:
    """``data`` as an array with a sample axis, else a ``TypeError``/``ValueError`` naming
    ``where`` (None, a number, nested lists of different lengths)."""
    if data is None:
        raise TypeError(f"{where}: expected samples, an array of shape (m, ...), got None")
    try:
        arr = np.array(data)
    except ValueError as err:  # NumPy's "inhomogeneous shape" for ragged nested lists
        raise ValueError(f"{where}: not an array of one shape ({err})") from None
    if arr.ndim == 0:
        raise TypeError(f"{where}: expected samples, an array of shape (m, ...), got "
                        f"{type(data).__name__} {data!r:.40}")
    return arr


def _check_seed(seed):
    """``seed`` as an int, or None; a bool, another type or an int outside [0, 2**63) (the
    range of the core's int keys, :func:`epynn_jax.network.checks.check_key`) raises."""
    if seed is None:
        return None
    msg = f"EpyNN.initialize: seed must be None or an int in [0, 2**63), got {seed!r:.80}"
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(msg)
    if not 0 <= seed < 2**63:
        raise ValueError(msg)
    return int(seed)


def _same_objects(a: tuple, b: tuple) -> bool:
    """``a`` and ``b`` hold the very same objects (nested tuples compared item by item)."""
    if len(a) != len(b):
        return False
    return all(_same_objects(x, y) if isinstance(x, tuple) and isinstance(y, tuple) else x is y
               for x, y in zip(a, b))


def _decide(A: np.ndarray, encoded: bool) -> np.ndarray:
    A = np.asarray(A)
    return np.argmax(A, axis=1) if encoded else np.around(A)
