"""The import rules of docs/architecture.md, checked on the source (function-level imports
included: a lazy import that points up is still an import)."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "epynn_jax"

_NET = "epynn_jax.network"
# The network rooms in the order of the page's table: each may import those above it.
_NETWORK_ORDER = tuple(f"{_NET}.{m}" for m in (
    "precision", "_gc", "parallel", "model", "objective", "optim", "checks", "programs",
    "epoch", "streaming", "fitting"))


def _above(module: str) -> tuple[str, ...]:
    return _NETWORK_ORDER[:_NETWORK_ORDER.index(module)]


# room (a module or a package prefix) -> the rooms of ours it may import, besides itself:
# the "may import" column of docs/architecture.md's table, room by room
ALLOWED = {
    "epynn_jax.errors": (),
    "epynn_jax.config": (),
    "epynn_jax.maths": ("epynn_jax.errors",),
    "epynn_jax.layers": ("epynn_jax.maths", "epynn_jax.errors"),
    "epynn_jax.data": ("epynn_jax.maths", "epynn_jax.errors"),
    f"{_NET}.precision": ("epynn_jax.layers.base",),
    f"{_NET}._gc": (),
    f"{_NET}.parallel": (),
    f"{_NET}.model": ("epynn_jax.layers", "epynn_jax.maths", f"{_NET}.precision",
                      f"{_NET}._gc"),
    f"{_NET}.objective": (f"{_NET}.model", "epynn_jax.layers", "epynn_jax.maths"),
    f"{_NET}.optim": ("epynn_jax.maths", "epynn_jax.layers.base"),
    f"{_NET}.checks": (f"{_NET}.model", f"{_NET}.optim", "epynn_jax.maths",
                       "epynn_jax.layers.base"),
    f"{_NET}.programs": (f"{_NET}.model", f"{_NET}.optim", "epynn_jax.maths"),
    f"{_NET}.epoch": (*_above(f"{_NET}.epoch"), "epynn_jax.maths", "epynn_jax.layers.base",
                      "epynn_jax.errors"),
    f"{_NET}.streaming": (*_above(f"{_NET}.streaming"), "epynn_jax.maths",
                          "epynn_jax.layers.base", "epynn_jax.errors"),
    f"{_NET}.fitting": (*_above(f"{_NET}.fitting"), "epynn_jax.maths", "epynn_jax.layers.base",
                        "epynn_jax.errors"),
    _NET: ("epynn_jax.layers", "epynn_jax.maths", "epynn_jax.errors"),  # its __init__
    "epynn_jax.io.checkpoint": (f"{_NET}.model", f"{_NET}.checks", f"{_NET}.precision",
                                "epynn_jax.layers.base", "epynn_jax.errors"),
    "epynn_jax.io.checkpointing": ("epynn_jax.io.checkpoint", f"{_NET}.model", f"{_NET}.checks",
                                   f"{_NET}.fitting.Progress", "epynn_jax.maths"),
    "epynn_jax.io.report": (),
    "epynn_jax.io": ("epynn_jax.network", "epynn_jax.layers", "epynn_jax.maths",
                     "epynn_jax.data", "epynn_jax.errors"),  # its __init__
    "epynn_jax.testing": ("epynn_jax.layers", f"{_NET}.checks", f"{_NET}.model",
                          f"{_NET}.precision"),
}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set[str]:
    """Every ``epynn_jax`` module ``path`` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("epynn_jax")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("epynn_jax"):
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _room(name: str) -> str | None:
    matches = [r for r in ALLOWED if name == r or name.startswith(r + ".")]
    return max(matches, key=len) if matches else None


def _within(target: str, rooms) -> bool:
    return any(target == r or target.startswith(r + ".") for r in rooms)


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_one_way(path):
    name = _module_name(path)
    room = _room(name)
    targets = _imports(path)
    if not name.startswith(("epynn_jax.compat", "epynn_jax.cli", "epynn_jax.__main__")):
        up = sorted(t for t in targets if _within(t, ("epynn_jax.compat", "epynn_jax.cli")))
        assert not up, f"{name} imports the facade or the command: {up}"
    if room is None:
        return
    allowed = (room, *ALLOWED[room])
    bad = sorted(t for t in targets if not _within(t, allowed)
                 and t not in ("epynn_jax.__version__",))
    assert not bad, f"{name} ({room}) imports {bad}; docs/architecture.md allows {allowed}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "layers").glob("*.py")),
                         ids=lambda p: p.name)
def test_a_layer_imports_only_maths_the_base_and_private_helpers(path):
    if path.name in ("__init__.py",):
        return
    for t in _imports(path):
        ok = _within(t, ("epynn_jax.maths", "epynn_jax.errors", "epynn_jax.layers.base")) or (
            t.startswith("epynn_jax.layers._"))
        assert ok, f"layers/{path.name} imports {t}"


@pytest.mark.parametrize("package", ["network", "io"])
def test_every_module_of_network_and_io_has_its_row(package):
    # a new module gets its own rule (and its row in the page's table), not its package's
    for path in (PACKAGE / package).glob("*.py"):
        name = _module_name(path)
        if path.name != "__init__.py":
            assert _room(name) == name, f"{name} has no rule of its own in ALLOWED"
            row = f"`{package}/{path.name}`"
            page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
            assert row in page, f"docs/architecture.md has no row {row}"


def test_network_never_imports_io():
    for path in (PACKAGE / "network").glob("*.py"):
        assert not [t for t in _imports(path) if _within(t, ("epynn_jax.io",))], path


def test_compat_has_no_scan_optimizer_or_metric_code_of_its_own():
    for path in (PACKAGE / "compat").rglob("*.py"):
        text = path.read_text()
        for word in ("lax.scan", "optax", "apply_updates"):
            assert word not in text, f"{path.relative_to(PACKAGE)} uses {word}"


def test_the_rules_are_those_of_the_page():
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    for room in ("maths/", "layers/", "network/epoch.py", "io/checkpointing.py", "compat/"):
        assert f"`{room}`" in page
