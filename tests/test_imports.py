"""The import graph of edlm_ext: no import cycle among its modules (what runs at import
time), nothing in the op layer reaching up into the layers built on it (not even a
lazy import inside a function), and edlm_ext.integrations.stock importing nothing of
edlm_ext, so its baselines stay independent oracles. Read from the source (AST), so a
new module is checked without being listed here."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edlm_ext"
# The op layer (the package's __init__, its public API, sits on top of everything);
# the layers above it import it, never the reverse.
LOWER = {"edlm_ext._C", "edlm_ext.ops", "edlm_ext._rng", "edlm_ext.reference", "edlm_ext.errors",
         "edlm_ext.timing", "edlm_ext.paths", "edlm_ext._version"}
UPPER = ("edlm_ext.sampler", "edlm_ext.energy", "edlm_ext.integrations", "edlm_ext.cli", "edlm_ext.train",
         "edlm_ext.models", "edlm_ext.evaluate")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _target(name: str) -> str:
    """The edlm_ext module an import of `name` loads (a name inside a module: that module)."""
    while name not in MODULES and "." in name and name != "edlm_ext._C":
        name = name.rsplit(".", 1)[0]
    return name


def imports(module: str, top_level_only: bool) -> set[str]:
    """The edlm_ext modules `module` imports (at import time only, or anywhere)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # also imports under module-level if / try blocks
        nodes = [n for stmt in tree.body for n in ast.walk(stmt)
                 if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{a.name}" for a in node.names] if base.startswith("edlm_ext") else [base]
        else:
            continue
        out |= {_target(n) for n in names if n.split(".")[0] == "edlm_ext"}
    out.discard(module)
    return out


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph, or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycles():
    graph = {m: imports(m, top_level_only=True) for m in MODULES}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m in LOWER))
def test_the_op_layer_never_imports_the_layers_above(module):
    above = {m for m in imports(module, top_level_only=False) if m.startswith(UPPER)}
    assert not above, f"{module} imports {sorted(above)}"


def test_stock_imports_nothing_of_edlm_ext():
    stock = [m for m in MODULES if m.startswith("edlm_ext.integrations.stock")]
    assert len(stock) >= 6
    for module in stock:
        outside = {m for m in imports(module, top_level_only=False) if not m.startswith("edlm_ext.integrations.stock")}
        assert not outside, f"{module} imports {sorted(outside)}"


def test_the_graph_sees_imports():
    """Power: the reader finds the package's known edges."""
    assert "edlm_ext.ops" in imports("edlm_ext.sampler", top_level_only=True)
    assert "edlm_ext.errors" in imports("edlm_ext.models.files", top_level_only=True)
    assert "edlm_ext.models.files" in imports("edlm_ext.train", top_level_only=True)
    assert "edlm_ext" in imports("edlm_ext.devices", top_level_only=False)  # a lazy `from . import build_info`
