"""Every ```python block of README.md runs, so the README cannot silently rot.

The first block (the short example) must run on its own in a fresh namespace. The others
are fragments of a workflow: they run in order in one namespace, after a small prelude that
defines the names they assume (a provider, codes, labels, ...) and nothing else.
"""

from __future__ import annotations

import ast
import builtins
import math
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

# The context the README's fragments assume, with small random data. Helpers start with "_":
# only the public names count as context (test_prelude_defines_exactly_the_assumed_names).
PRELUDE = """
import numpy as _np
import torch as _torch
from pml_shrewd import LabelDistance as _LabelDistance

_g = _torch.Generator().manual_seed(0)
provider = _LabelDistance(num_classes=100)
labels = _torch.randint(0, 100, (32,), generator=_g)  # for the first example's 32 codes
memory_codes, memory_labels = _torch.rand(96, 64, generator=_g), _torch.randint(0, 100, (96,), generator=_g)
train_z, train_y = _torch.rand(300, 64, generator=_g), _torch.randint(0, 100, (300,), generator=_g)
test_z, test_y = _torch.rand(40, 64, generator=_g), _torch.randint(0, 100, (40,), generator=_g)
train_bits, query_bits = (train_z > 0.5).numpy().astype(_np.uint8), (test_z > 0.5).numpy().astype(_np.uint8)
"""


def python_blocks() -> list[str]:
    """The ```python blocks of README.md, in order."""
    return re.findall(r"^```python\n(.*?)^```$", README.read_text(), flags=re.S | re.M)


def bound_and_used(source: str) -> tuple[set[str], set[str]]:
    """Names a block binds (assignments, imports, loop targets) and names it reads."""
    bound, used = set(), set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, (ast.Store, ast.Del)) else used).add(node.id)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return bound, used


def assumed_names(blocks: list[str]) -> list[set[str]]:
    """Per block, the names it reads that neither it nor an earlier block binds (nor builtins)."""
    known, out = set(dir(builtins)), []
    for block in blocks:
        bound, used = bound_and_used(block)
        out.append(used - bound - known)
        known |= bound
    return out


def test_readme_has_python_blocks():
    blocks = python_blocks()
    assert len(blocks) >= 3
    assert all(block.strip() for block in blocks)


def test_first_example_is_self_contained_and_trains():
    first = python_blocks()[0]
    assert assumed_names([first]) == [set()], "the first README example must define every name it uses"
    namespace: dict = {}
    exec(compile(first, "README.md[python block 1]", "exec"), namespace)
    loss = namespace["loss"]
    assert loss.dim() == 0 and math.isfinite(loss.item())
    weight = namespace["model"].weight
    assert weight.grad is not None and bool(weight.grad.isfinite().all()) and weight.grad.abs().sum() > 0


def test_prelude_defines_exactly_the_assumed_names():
    # A prelude name the README also binds could hide a broken README line; a name the README
    # no longer needs is dead context. Either way the prelude must be updated with the README.
    prelude_bound, _ = bound_and_used(PRELUDE)
    public = {name for name in prelude_bound if not name.startswith("_")}
    assumed = set().union(*assumed_names(python_blocks()))
    assert public == assumed, f"prelude defines {sorted(public - assumed)}, README assumes {sorted(assumed)}"


def test_readme_blocks_run_in_order():
    namespace: dict = {}
    exec(compile(PRELUDE, "test_readme.PRELUDE", "exec"), namespace)
    for i, block in enumerate(python_blocks(), start=1):
        try:
            exec(compile(block, f"README.md[python block {i}]", "exec"), namespace)
        except Exception as err:  # name the block: the traceback alone points into exec
            pytest.fail(f"README.md python block {i} fails: {type(err).__name__}: {err}\n{block}")
    # A few results the README promises.
    assert math.isfinite(namespace["loss"].item())
    assert 0 <= namespace["metrics"]["mAP"] <= 1 and namespace["metrics"]["k"] == 250
    assert 0 <= namespace["metrics"]["mAHP@k"] <= 1 and 0 <= namespace["l1_mahp"] <= 1
    assert namespace["hamming_map"] == pytest.approx(namespace["metrics"]["mAP"])
    # The PML tester example: Hamming metrics of the codes, not of L2-normalised ones.
    tested = namespace["accuracies"]["test"]
    assert 0 < tested["hamming_mAP_level0"] <= 1 and 0 <= tested["hamming_mAHP_level0"] <= 1
    assert namespace["ids"].shape == (len(namespace["query_bits"]), 10)
