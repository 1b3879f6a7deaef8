"""The map of the ops: every schema registered under torch.ops.edlm_ext has its
wrapper, its fake right under the wrapper (with its output helper), a float64
reference, an opcheck case and a row in the op -> files table (csrc/bindings.cpp and
the README's "Layout", the same table), and every file that table names exists. The
test hooks live outside the public namespace. One parametrized opcheck test runs the
shared table of sample inputs (tests/helpers.py), as extension-cpp's tests do."""
import inspect
import re
from pathlib import Path

import pytest
import torch
from torch._library import simple_registry

import edlm_ext
from edlm_ext import ops, reference

from . import helpers

ROOT = Path(__file__).resolve().parents[1]
TEST_HOOKS = ("philox4x32", "row_uniforms", "philox_uniforms")
HEADER = "| op | CPU, CUDA backends | kernels and launch logic | tests | bench |"
# The folder of each column's files.
COLUMNS = {"CPU, CUDA backends": "csrc", "kernels and launch logic": "csrc/include/edlm", "tests": "tests",
           "bench": "python/bench"}


def registered(namespace: str = "edlm_ext") -> set[str]:
    return {n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.split("::")[0] == namespace}


def _map_rows(lines: list[str]) -> dict[str, dict[str, list[str]]]:
    """The op -> files table that starts at HEADER in lines: {op: {column: [file, ...]}}."""
    start = lines.index(HEADER)
    names = [c.strip() for c in HEADER.strip("|").split("|")]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = {name: [f.strip() for f in cell.split(",")] for name, cell in zip(names[1:], cells[1:])}
    return rows


def bindings_map() -> dict:
    text = (ROOT / "csrc" / "bindings.cpp").read_text().splitlines()
    return _map_rows([line[3:] if line.startswith("// ") else line for line in text])


def readme_map() -> dict:
    return _map_rows((ROOT / "README.md").read_text().splitlines())


def _wrapper_lines() -> dict[str, int]:
    return {op: inspect.getsourcelines(getattr(ops, op))[1] for op in registered() if hasattr(ops, op)}


def missing_pieces(op: str) -> list[str]:
    """What op lacks of its map (empty for a complete op)."""
    missing = []
    wrapper = getattr(ops, op, None)
    if not callable(wrapper) or op not in edlm_ext.__all__:
        missing.append("wrapper (edlm_ext.ops, exported by edlm_ext)")
    fake = simple_registry.singleton.find(f"edlm_ext::{op}").fake_impl.kernel
    if fake is None:
        missing.append("fake")
    else:  # right under its wrapper: after it, before the next op's wrapper
        path, line = fake.source.rsplit(":", 1)
        starts = sorted(_wrapper_lines().values())
        mine = _wrapper_lines().get(op)
        nxt = next((s for s in starts if mine is not None and s > mine), float("inf"))
        if Path(path).resolve() != Path(ops.__file__).resolve() or mine is None or not mine < int(line) < nxt:
            missing.append("fake right under its wrapper")
    if not callable(getattr(ops, f"_{op}_outputs", None)):
        missing.append("output helper of the fake")
    if not callable(getattr(reference, op, None)):
        missing.append("reference")
    if op not in helpers.opcheck_cases("cpu"):
        missing.append("opcheck case")
    if op not in bindings_map():
        missing.append("row of the op -> files table")
    return missing


@pytest.mark.parametrize("op", sorted(registered()))
def test_every_registered_op_has_all_its_pieces(op):
    assert missing_pieces(op) == []


def test_a_missing_piece_is_reported():
    """Power: an op without any of its pieces is reported for each of them."""
    assert len(missing_pieces("no_such_op")) == 6


def test_the_ops_are_the_documented_five_and_the_hooks_are_private():
    assert registered() == {"masked_sample", "sample_proposals", "importance_resample", "unmask", "unmask_confident"}
    assert registered("edlm_ext_testing") == set(TEST_HOOKS)
    for hook in TEST_HOOKS:
        assert not hasattr(torch.ops.edlm_ext, hook)


def test_the_map_names_every_registered_op_and_existing_files():
    table = bindings_map()
    assert table == readme_map(), "csrc/bindings.cpp and README.md list different files"
    assert set(table) == registered()
    for op, columns in table.items():
        for column, files in columns.items():
            for f in files:
                assert (ROOT / COLUMNS[column] / f).is_file(), f"{op}: {COLUMNS[column]}/{f} does not exist"
        assert f"cpu/{op}.cpp" in columns["CPU, CUDA backends"] and f"cuda/{op}.cu" in columns["CPU, CUDA backends"]
        assert any(re.fullmatch(rf"test_{op}\w*\.py", f) for f in columns["tests"]), f"{op}: no tests/test_{op}*.py"


@pytest.mark.parametrize("op,i", [(op, i) for op, cases in helpers.opcheck_cases("cpu").items()
                                  for i in range(len(cases))])
def test_opcheck(op, i, device):
    """The fake against the real op (shapes, dtypes, strides), the schema, autograd
    registration and AOT dispatch (static and dynamic shapes) on each shared case."""
    args = helpers.opcheck_cases(device)[op][i]
    torch.library.opcheck(getattr(torch.ops.edlm_ext, op).default, args)

