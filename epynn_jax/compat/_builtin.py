"""Base of the facade's built-in layers: a stateful object over a functional layer.

A built-in facade layer keeps EpyNN's attributes (``d``, ``fs``, ``p``,
``fc``, ``bs``, ``g``, ``bc``, ``o``, ``activation``, ``se_hPars``) and
methods, and delegates the math to the functional layer it wraps
(:meth:`to_functional`). Its eager methods run the functional layer's jitted
functions one layer at a time; ``EpyNN.train`` instead compiles whole epochs
and refreshes these dicts afterwards.

Parameters are drawn as EpyNN draws them: from the layer's ``np_rng``, in
EpyNN's key order, with the NumPy initializers (``xavier``/``orthogonal``);
keys starting with ``b`` are zeros.
"""

from __future__ import annotations

import importlib
from typing import Any

import jax
import numpy as np

from epynn_jax.compat.commons import maths
from epynn_jax.compat.commons.maths import activation_name, name_of
from epynn_jax.compat.commons.models import Layer
from epynn_jax.compat.settings import se_hPars as _DEFAULT_HPARS
from epynn_jax.layers.base import LayerError, float_dtype
from epynn_jax.maths.activations import ActivationHPars
from epynn_jax.maths.initializers import NP_INITIALIZERS

__all__ = ["BuiltinLayer", "hpars_of", "for_compiled", "to_device", "to_device_array"]


def hpars_of(se_hPars: dict | None) -> ActivationHPars:
    """Activation hyperparameters from ``se_hPars``, with EpyNN's softmax gradient."""
    hp = {**_DEFAULT_HPARS, **(se_hPars or {})}
    return ActivationHPars(ELU_alpha=float(hp["ELU_alpha"]), LRELU_alpha=float(hp["LRELU_alpha"]),
                           softmax_temperature=float(hp["softmax_temperature"]),
                           epynn_softmax_grad=True)


def _host_copy(a, dt: np.dtype):
    """``a`` itself when it is a JAX array of ``dt`` (already placed), else a host copy."""
    return a if isinstance(a, jax.Array) and a.dtype == dt else np.array(a, dt)


def to_device(tree: dict) -> dict:
    """NumPy dict -> JAX arrays in the default float dtype: host copies, placed with ONE
    ``jax.device_put`` (``jnp.asarray`` compiled a small conversion program per new
    shape, about 10 ms each, ten of them in a facade's first ``train``)."""
    dt = np.dtype(float_dtype())
    return jax.device_put({k: _host_copy(v, dt) for k, v in tree.items()})


def to_device_array(a) -> jax.Array:
    """One array as :func:`to_device` places it."""
    return jax.device_put(_host_copy(a, np.dtype(float_dtype())))


def for_compiled(a):
    """One array for a compiled call to place: a JAX array of the default float dtype as it
    is, else a host copy in that dtype, which the call's C++ dispatch transfers (a
    ``jax.device_put`` first, as :func:`to_device_array` does, cost a one-sample
    ``predict`` tens of microseconds more)."""
    return _host_copy(a, np.dtype(float_dtype()))


def to_host(tree: dict) -> dict:
    """JAX dict -> NumPy arrays (read-only; ``np.asarray`` per leaf is several times
    cheaper than ``jax.device_get`` on the dict)."""
    return {k: np.asarray(v) for k, v in tree.items()}


@jax.jit
def _jit_forward(layer, p, X, key):
    return layer.forward(p, X, key, True)


@jax.jit
def _jit_forward_eval(layer, p, X, key):
    return layer.forward(p, X, key, False)


@jax.jit
def _jit_backward(layer, p, fc, dA):
    return layer.backward(p, fc, dA)


@jax.jit
def _jit_gradients(layer, p, fc, bc):
    return layer.compute_gradients(p, fc, bc)


def _lazy_dict(name: str) -> property:
    """A dict attribute that is filled from the model's last training step on first read."""
    slot = "_" + name

    def get(self):
        ref = self.__dict__.get("_model")
        model = ref() if ref is not None else None
        if model is not None and getattr(model, "_pending", None) is not None:
            model._materialize()
        return self.__dict__[slot]

    def set(self, value):
        self.__dict__[slot] = value

    return property(get, set, doc=f"EpyNN's ``{name}`` dict.")


#: The facade's own initializers: any other function is the user's, called by ``_draw``.
_OWN_INITIALIZERS = {"xavier": maths.xavier, "orthogonal": maths.orthogonal}


def check_initialization(init, where: str):
    """``init`` when it can draw a layer's weights: a function ``f(shape, rng)`` (EpyNN's
    ``xavier`` or ``orthogonal``, or the user's) or the name ``'xavier'`` or ``'orthogonal'``;
    else an error naming ``where`` (such as ``'Dense'``) and the argument. (An unknown name
    raised a bare ``KeyError`` at ``initialize``; ``None`` a ``TypeError`` about
    activations; EpyNN fails on both inside its dry run.)"""
    if callable(init) or (isinstance(init, str) and init in NP_INITIALIZERS):
        return init
    error = ValueError if isinstance(init, str) else TypeError
    raise error(f"{where}: initialization must be an initializer function (epynn.commons."
                f"maths.xavier or orthogonal, or your own f(shape, rng)) or one of the names "
                f"{', '.join(map(repr, NP_INITIALIZERS))}; got {init!r}")


def initializer_name(init) -> str:
    """The functional layer's ``initialization`` for an initializer given as a function
    or a name: xavier, orthogonal or zeros; any other (a user's function) gives xavier
    there, since the facade never draws through the functional layer -- ``_draw``
    calls the user's function itself, with the layer's ``np_rng``."""
    name = name_of(init, "initialization")
    return name if name in ("xavier", "orthogonal", "zeros") else "xavier"


#: EpyNN's per-layer methods: a built-in layer runs its compiled functional layer instead.
EPYNN_METHODS = ("compute_shapes", "initialize_parameters", "forward", "backward",
                 "compute_gradients", "update_parameters")


class BuiltinLayer(Layer):
    """A facade layer backed by a functional layer (``_functional = (module, class)``)."""

    def __init_subclass__(cls, **kwargs) -> None:
        """Refuse a user's subclass of a built-in layer that overrides EpyNN's methods (a
        subclass of ``Template`` with its own ``forward``): training runs the compiled
        functional layer, so those methods would be ignored without a word."""
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith("epynn_jax.compat."):
            return
        own = [m for m in EPYNN_METHODS if m in vars(cls)]
        if own:
            base = next(b for b in cls.__mro__[1:] if b.__module__.startswith("epynn_jax."))
            raise TypeError(
                f"{cls.__name__} subclasses the built-in layer {base.__name__} and overrides "
                f"{', '.join(own)}: a built-in layer trains with its compiled code, not these "
                "methods. Subclass epynn.commons.models.Layer to write a layer of your own")

    fc = _lazy_dict("fc")
    bc = _lazy_dict("bc")
    g = _lazy_dict("g")

    _functional: tuple[str, str] = ("", "")
    _param_order: tuple[str, ...] = ()

    def __init__(self, se_hPars: dict | None = None, **fkwargs: Any) -> None:
        super().__init__(se_hPars)
        self._fkwargs = fkwargs
        self._fl = None
        self.trainable = False
        self.name = type(self).__name__
        self.o.setdefault("seed", None)
        self._training = False
        self._model = None
        self._user_hPars = se_hPars

    def _config(self) -> dict:
        """Constructor arguments (JSON-able: functions by name), for model files."""
        cfg = dict(self._fkwargs)
        if hasattr(self, "initialization"):
            cfg["initialization"] = name_of(self.initialization, "initialization")
        return cfg

    # -- the functional layer -------------------------------------------------------

    def _functional_class(self):
        module, cls = self._functional
        try:
            return getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError):
            raise NotImplementedError(
                f"{type(self).__name__}: the functional layer {module}.{cls} is not available "
                "in this version of epynn_jax") from None

    def _functional_kwargs(self) -> dict:
        """The functional layer's arguments: the constructor's, plus the initializer by name."""
        kwargs = dict(self._fkwargs)
        if hasattr(self, "initialization"):
            kwargs["initialization"] = initializer_name(self.initialization)
        return kwargs

    def _setup_recurrent(self, se_hPars, unit_cells: int, activations: dict, initialization,
                         clip_gradients: bool, sequences: bool) -> None:
        """The constructor shared by RNN, LSTM and GRU: ``activations`` maps each
        ``activate*`` argument to its function (or name)."""
        names = {k: activation_name(f, f"{type(self).__name__}: {k}")
                 for k, f in activations.items()}
        BuiltinLayer.__init__(self, se_hPars, unit_cells=unit_cells, **names,
                              clip_gradients=bool(clip_gradients), sequences=bool(sequences))
        self.d["u"] = unit_cells
        for k, f in activations.items():
            setattr(self, k, f)
        self.initialization = check_initialization(initialization, type(self).__name__)
        self.clip_gradients = clip_gradients
        self.sequences = sequences
        self.activation = names
        self.trainable = True

    def to_functional(self):
        """The functional layer (built for the last input shape seen, if any)."""
        if self._fl is not None:
            return self._fl
        return self._functional_class()(**self._functional_kwargs(),
                                        hpars=hpars_of(self.se_hPars))

    def _build(self, sample_shape: tuple[int, ...]) -> None:
        fl = self._functional_class()(**self._functional_kwargs(), hpars=hpars_of(self.se_hPars))
        self._fl = fl.compute_shapes(tuple(int(s) for s in sample_shape))

    def _sample_shape_changed(self, A) -> bool:
        return self._fl is None or tuple(self._fl.input_shape) != tuple(np.shape(A)[1:])

    def check_fits(self, sample_shape: tuple[int, ...], where: str) -> tuple[int, ...]:
        """Raise ``LayerError`` unless samples of ``sample_shape`` fit this layer and the
        shapes of its ``p`` (a Dense's ``W`` fixes its input features; a recurrent
        layer's weights do not fix the number of steps); return its output's sample
        shape. Nothing is traced."""
        sample_shape = tuple(int(s) for s in sample_shape)
        fl = self._fl
        if fl is None or tuple(fl.input_shape) != sample_shape:
            fl = self._functional_class()(**self._functional_kwargs(),
                                          hpars=hpars_of(self.se_hPars))
            fl = fl.compute_shapes(sample_shape)
        for k, shape in fl.param_shapes().items():
            got = tuple(np.shape(self.p[k])) if k in self.p else None
            if got != tuple(shape):
                has = f"has p[{k!r}] of shape {got}" if got is not None else f"has no p[{k!r}]"
                raise LayerError(f"{where}: {self.name} {has}; an input of sample shape "
                                 f"{sample_shape} needs {tuple(shape)}")
        return tuple(fl.output_shape)

    # -- EpyNN's methods ------------------------------------------------------------

    def compute_shapes(self, A) -> None:
        """Infer dimensions and forward shapes from the input ``A`` (m, ...)."""
        self._build(np.shape(A)[1:])
        m = int(np.shape(A)[0])
        self.d.update(self._fl.d)
        self.d["m"] = m
        self.fs.update(self._fl.fs(m))

    def _draw(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        init = getattr(self, "initialization", None)
        rng = getattr(self, "np_rng", None)
        if rng is None:
            rng = np.random.default_rng()
        if key.startswith("b") or init is None:
            return np.zeros(shape)
        check_initialization(init, self.name)  # also one assigned after the constructor
        if callable(init) and init is not _OWN_INITIALIZERS.get(name_of(init, "initialization")):
            # a user's function, even one named like a built-in, draws the values itself
            return np.asarray(init(shape, rng=rng), dtype=np.float64)
        return NP_INITIALIZERS[name_of(init)](rng, shape)

    def initialize_parameters(self) -> None:
        """Draw ``p`` from ``np_rng`` in EpyNN's order (biases zero)."""
        if self._fl is None:
            raise RuntimeError(f"{self.name}: call compute_shapes before initialize_parameters")
        shapes = self._fl.param_shapes()
        order = [k for k in self._param_order if k in shapes]
        order += [k for k in shapes if k not in order]
        self.p.clear()
        for k in order:
            self.p[k] = self._draw(k, shapes[k]).reshape(shapes[k])

    def _key(self):
        rng = getattr(self, "np_rng", None)
        seed = int(rng.integers(2**31)) if rng is not None and self._uses_key else 0
        return jax.random.key(seed)

    _uses_key = False

    def forward(self, A):
        """A = layer(X), eagerly; fills ``fc`` and ``fs``."""
        if self._sample_shape_changed(A):
            self.compute_shapes(A)
        self.check_fits(np.shape(A)[1:], "forward")
        fn = _jit_forward if self._training else _jit_forward_eval
        out, fc = fn(self._fl, to_device(self.p), to_device_array(A), self._key())
        self.fc.clear()
        self.fc.update(to_host(fc))
        self.update_shapes(self.fc, self.fs)
        self.d["m"] = int(np.shape(A)[0])
        return np.asarray(out)

    def backward(self, dX):
        """dX of the input from dA of the output, eagerly; fills ``bc`` and ``bs``."""
        dXout, bc = _jit_backward(self._fl, to_device(self.p), to_device(self.fc),
                                  to_device_array(dX))
        self.bc.clear()
        self.bc.update(to_host(bc))
        self.update_shapes(self.bc, self.bs)
        return np.asarray(dXout)

    def compute_gradients(self) -> None:
        """``g`` from the caches (clipped for recurrent layers that clip)."""
        g = _jit_gradients(self._fl, to_device(self.p), to_device(self.fc), to_device(self.bc))
        self.g.clear()
        self.g.update(to_host(g))

    def update_parameters(self) -> None:
        """p[k] -= lrate[e] * g['d' + k] (only when ``trainable``)."""
        if not self.trainable:
            return
        lr = self.lrate[self.e]
        for gk, gv in self.g.items():
            k = gk[1:]
            self.p[k] = self.p[k] - lr * np.reshape(gv, np.shape(self.p[k]))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.activation or ''}>".replace(" >", ">")
