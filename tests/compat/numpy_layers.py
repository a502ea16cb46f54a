"""Custom NumPy layers written the EpyNN way, defined at module level (so that a model
file naming them finds them once this module is imported)."""

from __future__ import annotations

import numpy as np

from epynn_jax.compat.commons.models import Layer


class Scale(Layer):
    """A = X * s, s of shape (1, n): one trainable parameter."""

    def __init__(self, factor: float = 1.0) -> None:
        super().__init__()
        self.factor = factor
        self.trainable = True

    def compute_shapes(self, A):
        self.d["n"] = A.shape[1]
        self.fs["s"] = (1, A.shape[1])

    def initialize_parameters(self):
        self.p["s"] = self.factor + 0.1 * self.np_rng.standard_normal(self.fs["s"])

    def forward(self, A):
        self.fc["X"] = A
        self.fc["A"] = A * self.p["s"]
        return self.fc["A"]

    def backward(self, dX):
        self.bc["dA"] = dX
        self.bc["dX"] = dX * self.p["s"]
        return self.bc["dX"]

    def compute_gradients(self):
        self.g["ds"] = np.sum(self.bc["dA"] * self.fc["X"], axis=0, keepdims=True)

    def update_parameters(self):
        if self.trainable:
            self.p["s"] = self.p["s"] - self.lrate[self.e] * self.g["ds"]


class Take(Layer):
    """A = X[:, :k]: changes the shape, has no parameters, keeps ``k`` as an attribute."""

    def __init__(self, k: int = 2) -> None:
        super().__init__()
        self.k = k
        self.trainable = False

    def compute_shapes(self, A):
        self.d["n"] = A.shape[1]

    def initialize_parameters(self):
        pass

    def forward(self, A):
        self.fc["X"] = A
        return A[:, : self.k]

    def backward(self, dX):
        dA = np.zeros(np.shape(self.fc["X"]))
        dA[:, : self.k] = dX
        return dA

    def compute_gradients(self):
        pass

    def update_parameters(self):
        pass
