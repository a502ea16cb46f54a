"""Data: splitting, encoding, scaling, padding and batching (host side, before training)."""

from epynn_jax.data import dataset
from epynn_jax.data.dataset import (
    DataSet,
    batches,
    embed,
    index_elements,
    one_hot_labels,
    one_hot_sequences,
    padding,
    scale_features,
    split_dataset,
)

__all__ = ["dataset", "DataSet", "batches", "embed", "index_elements", "one_hot_labels",
           "one_hot_sequences", "padding", "scale_features", "split_dataset"]
