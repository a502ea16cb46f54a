"""The init report printed by ``EpyNN.train(init_logs=True)``: plain-text tables.

Data sets (sizes, batch size), labels per set, the architecture (dimensions,
activations, forward and backward shapes, and how each layer runs: compiled
with the functional core, or eagerly as a custom NumPy layer), learning-rate
schedules and activation hyperparameters.
"""

from __future__ import annotations

from epynn_jax.compat._builtin import BuiltinLayer
from epynn_jax.compat._report import text_table

__all__ = ["init_report", "layer_mode"]


def _kv(d: dict) -> str:
    return "\n".join(f"{k}: {v}" for k, v in d.items())


def layer_mode(layer) -> str:
    """How ``layer`` runs during training, with the reason."""
    if isinstance(layer, BuiltinLayer):
        return "compiled\n(functional core)"
    mode, reason = getattr(layer, "_mode", ("eager", "not traced"))
    if mode == "compiled":
        return f"compiled\n(custom layer:\n{reason})"
    return f"eager NumPy\n(custom layer:\n{reason};\nruns between\ncompiled segments)"


def init_report(model) -> str:
    """All init tables as one string."""
    emb = model.embedding
    dsets = emb.dsets
    sizes = [len(d.ids) for d in dsets] + ["None"] * (3 - len(dsets))
    data = text_table([["dtrain", "dval", "dtest", "batch\nsize"],
                       [*sizes, emb.se_dataset["batch_size"]]])
    labels = [len(dsets[0].b)] + ["\n".join(f"{k}: {v}" for k, v in sorted(d.b.items()))
                                  for d in dsets] + ["None"] * (3 - len(dsets))
    labels_t = text_table([["N_LABELS", "dtrain", "dval", "dtest"], labels])
    arch = [["ID", "Layer", "Dimensions", "Activation", "FW_Shapes", "BW_Shapes", "Mode"]]
    for i, layer in enumerate(model.layers):
        net = model.network.get(id(layer), {})
        arch.append([str(i), layer.name, _kv(layer.d), _kv(layer.activation),
                     _kv(net.get("FW_Shapes", layer.fs)), _kv(net.get("BW_Shapes", layer.bs)),
                     layer_mode(layer)])
    lrate = [["Layer", "epochs", "schedule", "decay_k", "cycle\nepochs", "cycle\ndescent",
              "cycle\nnumber", "learning\nrate\n(start)", "learning\nrate\n(end)", "end\n(%)"]]
    others = [["Layer", "LRELU\nalpha", "ELU\nalpha", "softmax\ntemperature"]]
    for layer in model.layers:
        if not layer.p:
            continue
        hp = layer.se_hPars
        lr0, lr1 = layer.lrate[0], layer.lrate[-1]
        lrate.append([layer.name, hp["epochs"], hp["schedule"], f"{hp['decay_k']:.3g}",
                      hp["cycle_epochs"], hp["cycle_descent"], hp["cycle_number"],
                      f"{lr0:.2e}", f"{lr1:.2e}",
                      round(lr1 / lr0 * 100, 3) if lr0 else 0])
        others.append([layer.name, hp.get("LRELU_alpha"), hp.get("ELU_alpha"),
                       hp.get("softmax_temperature")])
    bar = f"----------------------- {model.uname} -------------------------"
    parts = [bar, "", "Datasets", data, labels_t, "", "Model Architecture", text_table(arch), "",
             "Layers", text_table(lrate), text_table(others), bar]
    return "\n".join(parts)
