"""Layers: one module per layer, each a frozen dataclass plus five pure functions."""

from epynn_jax.layers.base import Layer, LayerError, apply
from epynn_jax.layers.convolution import Convolution
from epynn_jax.layers.dense import Dense
from epynn_jax.layers.dropout import Dropout
from epynn_jax.layers.embedding import Embedding
from epynn_jax.layers.flatten import Flatten
from epynn_jax.layers.gru import GRU
from epynn_jax.layers.lstm import LSTM
from epynn_jax.layers.pooling import Pooling
from epynn_jax.layers.rnn import RNN
from epynn_jax.layers.template import Template

__all__ = [
    "Layer",
    "LayerError",
    "apply",
    "Convolution",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "GRU",
    "LSTM",
    "Pooling",
    "RNN",
    "Template",
]
