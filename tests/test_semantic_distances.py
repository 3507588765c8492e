"""LabelDistance, MatrixDistance and HierarchyDistance (edge lists, files) against references."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from pml_shrewd.semantic_distances import (
    HierarchyDistance,
    LabelDistance,
    MatrixDistance,
    PowerDistance,
    SemanticDistance,
)

# ----------------------------------------------------------------------------- helpers


def reference_hierarchy_matrix(edges, classes):
    """Slow, obviously-correct d = height(lcs)/height(root) with explicit loops."""
    parent = {str(c): str(p) for p, c in edges}
    nodes = set(parent) | set(parent.values())
    root = [n for n in nodes if n not in parent][0]

    def ancestors(n):  # n, parent(n), ..., root
        out = [n]
        while out[-1] != root:
            out.append(parent[out[-1]])
        return out

    def depth(n):
        return len(ancestors(n)) - 1

    leaves = [n for n in nodes if n not in parent.values()]

    def height(n):  # longest path down to a leaf: max over leaves below n
        return max(depth(leaf) - depth(n) for leaf in leaves if n in ancestors(leaf))

    def lcs(a, b):
        common = [n for n in ancestors(a) if n in ancestors(b)]
        return max(common, key=depth)

    C = len(classes)
    out = np.zeros((C, C))
    for i in range(C):
        for j in range(C):
            if i != j:
                out[i, j] = height(lcs(str(classes[i]), str(classes[j]))) / height(root)
    return out


def random_tree(rng, n_nodes):
    """Random rooted tree as shuffled (parent, child) edges with string names."""
    names = [f"node{k}" for k in range(n_nodes)]
    edges = [(names[rng.randrange(k)], names[k]) for k in range(1, n_nodes)]
    rng.shuffle(edges)
    return edges, names


HAND_EDGES = [
    ("root", "animal"),
    ("root", "car"),
    ("animal", "mammal"),
    ("animal", "fish"),
    ("mammal", "cat"),
    ("mammal", "dog"),
]

# ----------------------------------------------------------------------------- LabelDistance


def test_label_distance_matches_loops():
    provider = LabelDistance(num_classes=5)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, 5, (7,), generator=g), torch.randint(0, 5, (4,), generator=g)
    d = provider(a, b)
    ref = torch.tensor([[0.0 if x == y else 1.0 for y in b.tolist()] for x in a.tolist()])
    assert d.dtype == torch.float32 and d.device.type == "cpu"
    assert torch.equal(d, ref)
    assert torch.equal(provider(a), provider(a, a))
    assert provider.matrix().shape == (5, 5)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_label_distance_bad_num_classes(bad):
    with pytest.raises(ValueError, match="num_classes"):
        LabelDistance(bad)


def test_label_distance_accepts_numpy_int_and_int32_ids():
    provider = LabelDistance(np.int64(3))
    d = provider(torch.tensor([0, 2], dtype=torch.int32))
    assert torch.equal(d, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))


# ----------------------------------------------------------------------------- bad ids


@pytest.mark.parametrize("provider", [LabelDistance(4), MatrixDistance(np.zeros((4, 4)))])
def test_ids_out_of_range_name_the_id_and_range(provider):
    with pytest.raises(IndexError, match=r"id 4 .*\[0, 3\]"):
        provider(torch.tensor([0, 4]))
    with pytest.raises(IndexError, match=r"id -1 .*\[0, 3\]"):
        provider(torch.tensor([0, 1]), torch.tensor([-1]))


@pytest.mark.parametrize("provider", [LabelDistance(4), HierarchyDistance(HAND_EDGES)])
def test_bad_id_shapes_and_dtypes(provider):
    with pytest.raises(ValueError, match="1-D"):
        provider(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        provider(torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="integer"):
        provider(torch.tensor([True, False]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        provider([0, 1])


def test_empty_ids_give_empty_matrix():
    d = HierarchyDistance(HAND_EDGES)(torch.tensor([], dtype=torch.long), torch.tensor([1, 2]))
    assert d.shape == (0, 2)


# ----------------------------------------------------------------------------- MatrixDistance


def random_distance_matrix(rng, C):
    m = rng.random((C, C))
    m = (m + m.T) / 2
    np.fill_diagonal(m, 0.0)
    return m


def test_matrix_distance_indexes_like_loops():
    rng = np.random.default_rng(1)
    m = random_distance_matrix(rng, 6)
    for matrix in (m, torch.from_numpy(m), m.tolist()):
        provider = MatrixDistance(matrix)
        a, b = torch.tensor([5, 0, 3, 3]), torch.tensor([1, 2, 5])
        d = provider(a, b)
        ref = torch.tensor([[m[i, j] for j in b.tolist()] for i in a.tolist()], dtype=torch.float32)
        assert d.dtype == torch.float32 and d.device.type == "cpu"
        torch.testing.assert_close(d, ref)
    assert provider.num_ids == 6


def test_matrix_distance_matrix_is_a_copy():
    provider = MatrixDistance([[0.0, 0.5], [0.5, 0.0]])
    full = provider.matrix()
    full[0, 1] = 1.0
    assert provider(torch.tensor([0]), torch.tensor([1])).item() == 0.5


def test_matrix_distance_tolerance_is_made_exact():
    m = np.array([[1e-9, 0.3], [0.3 + 1e-9, 0.0]])
    d = MatrixDistance(m).matrix()
    assert d[0, 0] == 0 and d[0, 1] == d[1, 0]


@pytest.mark.parametrize(
    "matrix, match",
    [
        (np.zeros((2, 3)), "square"),
        (np.zeros(3), "square"),
        (np.zeros((2, 2, 2)), "square"),
        (np.zeros((0, 0)), "empty"),
        (np.array([[0.0, np.nan], [np.nan, 0.0]]), "finite"),
        (np.array([[0.0, np.inf], [np.inf, 0.0]]), "finite"),
        (np.array([[0.0, -0.1], [-0.1, 0.0]]), r"\[0, 1\]"),
        (np.array([[0.0, 1.5], [1.5, 0.0]]), r"\[0, 1\]"),
        (np.array([[0.2, 0.5], [0.5, 0.0]]), "diagonal"),
        (np.array([[0.0, 0.5], [0.4, 0.0]]), "symmetric"),
    ],
)
def test_matrix_distance_bad_matrix(matrix, match):
    with pytest.raises(ValueError, match=match):
        MatrixDistance(matrix)


def test_matrix_distance_non_numeric():
    with pytest.raises(TypeError, match="numeric"):
        MatrixDistance([["a", "b"], ["c", "d"]])


@pytest.mark.parametrize("suffix", [".npy", ".txt", ".csv", ".pt"])
def test_matrix_distance_from_file(tmp_path, suffix):
    m = random_distance_matrix(np.random.default_rng(2), 5)
    path = tmp_path / f"d{suffix}"
    if suffix == ".npy":
        np.save(path, m)
    elif suffix == ".pt":
        torch.save(torch.from_numpy(m), path)
    else:
        np.savetxt(path, m, delimiter="," if suffix == ".csv" else " ")
    torch.testing.assert_close(MatrixDistance.from_file(path).matrix(), torch.from_numpy(m).float())


def test_matrix_distance_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        MatrixDistance.from_file(tmp_path / "nope.npy")


# ----------------------------------------------------------------------------- HierarchyDistance


def test_hand_written_tree_known_distances():
    provider = HierarchyDistance(HAND_EDGES)
    # leaves sorted by name: car, cat, dog, fish; heights: mammal 1, animal 2, root 3
    assert provider.classes == ["car", "cat", "dog", "fish"]
    assert provider.depth == 3 and provider.root == "root"
    expected = torch.tensor(
        [
            [0, 1, 1, 1],
            [1, 0, 1 / 3, 2 / 3],
            [1, 1 / 3, 0, 2 / 3],
            [1, 2 / 3, 2 / 3, 0],
        ],
        dtype=torch.float32,
    )
    torch.testing.assert_close(provider.matrix(), expected)
    torch.testing.assert_close(provider(torch.tensor([1, 3]), torch.tensor([2])), expected[[1, 3]][:, [2]])
    assert provider.lcs("cat", "dog") == "mammal" and provider.lcs(1, 3) == "animal"
    assert (
        provider.height("animal") == 2
        and provider.parent("cat") == "mammal"
        and provider.parent("root") is None
    )
    assert provider.ancestors("dog") == ["dog", "mammal", "animal", "root"]


def test_explicit_classes_and_inner_node_class():
    provider = HierarchyDistance(HAND_EDGES, classes=["dog", "mammal", "car"], names=["Dog", "Mammal", "Car"])
    assert provider.names == ["Dog", "Mammal", "Car"]
    expected = torch.tensor([[0, 1 / 3, 1], [1 / 3, 0, 1], [1, 1, 0]], dtype=torch.float32)
    torch.testing.assert_close(provider.matrix(), expected)


def test_integer_leaf_names_sorted_numerically():
    edges = [(100, 10), (100, 2), (101, 100), (101, 1)]
    provider = HierarchyDistance(edges)
    assert provider.classes == ["1", "2", "10"]
    expected = torch.tensor([[0, 1, 1], [1, 0, 0.5], [1, 0.5, 0]], dtype=torch.float32)
    torch.testing.assert_close(provider.matrix(), expected)


@pytest.mark.parametrize("seed", range(6))
def test_random_trees_match_slow_reference(seed):
    rng = random.Random(seed)
    edges, names = random_tree(rng, rng.randint(2, 40))
    inner = {p for p, _ in edges}
    leaves = sorted(n for n in names if n not in inner)
    ref = reference_hierarchy_matrix(edges, leaves)
    provider = HierarchyDistance(edges)
    assert provider.classes == leaves
    np.testing.assert_allclose(provider.matrix().numpy(), ref, rtol=0, atol=1e-6)
    # explicit classes, including inner nodes, in random order
    classes = rng.sample(names, k=rng.randint(1, len(names)))
    ref = reference_hierarchy_matrix(edges, classes)
    np.testing.assert_allclose(HierarchyDistance(edges, classes).matrix().numpy(), ref, rtol=0, atol=1e-6)


def test_random_tree_properties():
    edges, _ = random_tree(random.Random(7), 60)
    m = HierarchyDistance(edges).matrix()
    assert torch.equal(m, m.T) and (m.diagonal() == 0).all()
    assert m.min() >= 0 and m.max() <= 1


def test_lcs_matches_brute_force():
    rng = random.Random(3)
    edges, names = random_tree(rng, 30)
    provider = HierarchyDistance(edges, names)
    for _ in range(50):
        a, b = rng.choice(names), rng.choice(names)
        common = [n for n in provider.ancestors(a) if n in provider.ancestors(b)]
        deepest = max(common, key=lambda n: len(provider.ancestors(n)))
        assert provider.lcs(a, b) == deepest


def test_from_file_barz_format(tmp_path):
    path = tmp_path / "tree.parent-child.txt"
    path.write_text("# comment\n5 0\n5 1\n\n6 5\n6 2\n7 6\n7 3\n")
    provider = HierarchyDistance.from_file(path)
    assert provider.classes == ["0", "1", "2", "3"]
    edges = [("5", "0"), ("5", "1"), ("6", "5"), ("6", "2"), ("7", "6"), ("7", "3")]
    np.testing.assert_allclose(
        provider.matrix().numpy(), reference_hierarchy_matrix(edges, ["0", "1", "2", "3"])
    )


def test_from_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        HierarchyDistance.from_file(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\n3 4 5\n")
    with pytest.raises(ValueError, match=r"bad.txt:2"):
        HierarchyDistance.from_file(bad)


@pytest.mark.parametrize(
    "edges, classes, match",
    [
        ([("r", "a"), ("r", "b")], ["a", "zebra"], "'zebra' .*not in the hierarchy"),
        ([("r", "a"), ("q", "a")], None, "two parents"),
        ([("r", "a"), ("q", "b")], None, "single root"),
        ([("r", "a"), ("a", "b"), ("b", "c"), ("c", "a")], None, "two parents|cycle"),
        ([("a", "b"), ("b", "a")], None, "cycle"),
        ([("a", "a")], None, "itself"),
        ([], None, "at least one"),
        ([("a", "b", "c")], None, "pair"),
        ([("r", "a"), ("r", "b")], ["a", "a"], "both class"),
    ],
)
def test_hierarchy_bad_input(edges, classes, match):
    with pytest.raises(ValueError, match=match):
        HierarchyDistance(edges, classes)


def test_hierarchy_disconnected_cycle():
    # root r is fine, but x -> y -> x hangs off nothing: every node of it has a parent
    with pytest.raises(ValueError, match="cycle"):
        HierarchyDistance([("r", "a"), ("x", "y"), ("y", "x")])


def test_cifar100_barz_needs_path():
    with pytest.raises(ValueError, match="path"):
        HierarchyDistance.cifar100(source="barz")
    with pytest.raises(ValueError, match="unknown source"):
        HierarchyDistance.cifar100(source="imagenet")


def test_chunked_matrix_build_matches_reference(monkeypatch):
    import pml_shrewd.semantic_distances.hierarchy as hierarchy

    monkeypatch.setattr(hierarchy, "_CHUNK_ELEMENTS", 50)  # a few rows per chunk
    edges, names = random_tree(random.Random(11), 45)
    inner = {p for p, _ in edges}
    leaves = sorted(n for n in names if n not in inner)
    ref = reference_hierarchy_matrix(edges, leaves)
    np.testing.assert_allclose(HierarchyDistance(edges).matrix().numpy(), ref, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- PowerDistance


@pytest.mark.parametrize("exponent", [0.25, 0.5, 1.0, 2.0])
def test_power_distance_matches_loops(exponent):
    edges, names = random_tree(random.Random(3), 15)
    tree = HierarchyDistance(edges)
    provider = PowerDistance(tree, exponent)
    ids_a, ids_b = torch.tensor([0, 2, 1, 2]), torch.tensor([1, 0, 2])
    base = tree(ids_a, ids_b)
    expected = torch.tensor([[float(base[i, j]) ** exponent for j in range(3)] for i in range(4)])
    torch.testing.assert_close(provider(ids_a, ids_b), expected)
    assert provider.num_ids == tree.num_ids


def test_power_distance_keeps_order_and_endpoints():
    tree = HierarchyDistance(HAND_EDGES)  # classes sorted: car, cat, dog, fish
    d, d_half = tree.matrix(), PowerDistance(tree, 0.5).matrix()
    assert torch.equal(d_half == 0, d == 0) and torch.equal(d_half == 1, d == 1)
    # cat-dog (siblings) grows relative to cat-car (root): the gap to the nearest class widens.
    assert d_half[1, 2] > d[1, 2] and d_half[1, 0] == d[1, 0] == 1
    order = d.flatten().argsort(stable=True)
    assert torch.equal(d_half.flatten()[order], d_half.flatten()[order].sort().values)


def test_power_distance_checks_ids_and_arguments():
    provider = PowerDistance(LabelDistance(3), 0.5)
    with pytest.raises(IndexError, match="outside its range"):
        provider(torch.tensor([0, 3]))
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="exponent > 0"):
            PowerDistance(LabelDistance(3), bad)
    with pytest.raises(TypeError, match="wraps a SemanticDistance"):
        PowerDistance(np.zeros((3, 3)), 0.5)


# ----------------------------------------------------------------------------- values a provider returns


def test_matrix_distance_names_a_similarity_matrix():
    d = random_distance_matrix(np.random.default_rng(4), 4)
    with pytest.raises(ValueError, match="similarity matrix .*1 - S.*from_similarity"):
        MatrixDistance(1.0 - d)  # diagonal 1: similarities, not distances
    torch.testing.assert_close(MatrixDistance.from_similarity(1.0 - d).matrix(), torch.from_numpy(d).float())
    with pytest.raises(ValueError, match="1 on the diagonal"):
        MatrixDistance.from_similarity(d)  # a distance matrix is not a similarity matrix
    with pytest.raises(ValueError, match="symmetric"):
        MatrixDistance.from_similarity([[1.0, 0.5], [0.2, 1.0]])
    with pytest.raises(ValueError, match="symmetric"):
        MatrixDistance([[0.0, 0.5, 0.1], [0.4, 0.0, 0.2], [0.1, 0.2, 0.0]])


class Returns(SemanticDistance):  # a user's own provider
    """Returns whatever ``fn(ids_a, ids_b)`` computes, as a user's provider might."""

    def __init__(self, fn, num_ids=3):
        self.fn, self.num_ids = fn, num_ids

    def pairwise(self, ids_a, ids_b):
        return self.fn(ids_a.float(), ids_b.float())


def _scaled(a, b):  # a distance in [0, 2]: unnormalised
    return (a[:, None] - b[None, :]).abs()


@pytest.mark.parametrize(
    "fn, match",
    [
        (_scaled, r"outside \[0, 1\]: d\(0, 2\) = 2.0"),
        (lambda a, b: -_scaled(a, b) / 2, r"outside \[0, 1\]"),
        (lambda a, b: _scaled(a, b) / 0.0, "non-finite"),  # 0/0 = NaN on equal ids, inf elsewhere
        (lambda a, b: 1.0 - _scaled(a, b) / 2, "equal ids.*similarity"),
        (lambda a, b: (a[:, None] > b[None, :]).float(), "not symmetric"),
        (lambda a, b: torch.zeros(len(a), len(b) + 1), "shape"),
    ],
)
def test_provider_output_outside_the_protocol_is_refused(fn, match):
    provider = Returns(fn)
    with pytest.raises(ValueError, match=match):
        provider(torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=match):  # PowerDistance checks its base's values too
        PowerDistance(provider, 0.5)(torch.tensor([0, 1, 2]))


def test_provider_output_rounding_is_clamped_and_good_output_passes():
    tiny = Returns(
        lambda a, b: (_scaled(a, b) / 2 * (1 + 1e-7)).clamp(min=0) - 1e-7 * (a[:, None] != b[None, :])
    )
    d = tiny(torch.tensor([0, 1, 2]))
    assert d.min() >= 0 and d.max() <= 1 and d[0, 2] == pytest.approx(1.0)
    ints = Returns(lambda a, b: (a[:, None] != b[None, :]).long())  # integer 0/1 output becomes float
    assert ints(torch.tensor([0, 1])).dtype == torch.float32
    assert Returns(_scaled).check_output and not HierarchyDistance(HAND_EDGES).check_output


def test_ids_outside_a_providers_range_are_refused():
    providers = [
        LabelDistance(4),
        MatrixDistance(random_distance_matrix(np.random.default_rng(5), 4)),
        HierarchyDistance(HAND_EDGES),
        PowerDistance(HierarchyDistance(HAND_EDGES), 0.5),
        Returns(lambda a, b: _scaled(a, b) / 3, num_ids=4),
    ]
    for provider in providers:
        for bad in ([0, 4], [-1, 0]):
            with pytest.raises(IndexError, match=r"outside its range \[0, 3\]"):
                provider(torch.tensor(bad))
            with pytest.raises(IndexError, match="outside its range"):
                provider(torch.tensor([0]), torch.tensor(bad))


# ----------------------------------------------------------------------------- hierarchy files and a data set's classes

SMALL_TREE = """# root -> animal (-> fish (tench, goldfish), dog (springer, beagle)), thing (church, horn)
root animal
root thing
animal fish
animal dog
fish tench
fish goldfish
dog springer
dog beagle
thing church
thing horn
"""


def test_hierarchy_file_maps_a_subset_of_classes_by_name(tmp_path):
    from pml_shrewd.semantic_distances import build_semantic_distance

    path = tmp_path / "tree.txt"
    path.write_text(SMALL_TREE)
    full = HierarchyDistance.from_file(path)  # the tree's own classes: its sorted leaves
    classes = ["tench", "springer", "church"]  # a data set holding 3 of the 6 classes
    provider = build_semantic_distance("hierarchy", classes=classes, hierarchy_file=path)
    pos = [full.classes.index(c) for c in classes]
    torch.testing.assert_close(provider.matrix(), full.matrix()[pos][:, pos])
    assert provider(torch.tensor([0]), torch.tensor([1])).item() == pytest.approx(2 / 3)  # meet at animal
    assert provider.names == classes and provider.classes == classes
    with pytest.raises(ValueError, match=r"lacks 2 of the data set's 4 classes: 'cat', 'ship'"):
        build_semantic_distance("hierarchy", classes=["tench", "cat", "horn", "ship"], hierarchy_file=path)
    with pytest.raises(
        ValueError, match=r"2 of 3 class nodes are not in the hierarchy: 'cat' \(id 1\), 'ship'"
    ):
        HierarchyDistance.from_file(path, ["tench", "cat", "ship"])


def test_hierarchy_file_with_integer_ids(tmp_path):
    from pml_shrewd.semantic_distances import build_semantic_distance

    path = tmp_path / "barz.parent-child.txt"  # Barz & Denzler's format: ids 0..C-1 are the classes
    path.write_text("5 0\n5 1\n6 5\n6 2\n7 6\n7 3\n")
    names = ["apple", "pear", "cat", "car"]
    provider = build_semantic_distance("hierarchy", classes=names, hierarchy_file=path)
    assert provider.classes == ["0", "1", "2", "3"] and provider.names == names
    torch.testing.assert_close(provider.matrix(), HierarchyDistance.from_file(path).matrix())
    # Integer class names match nodes by name (an npz without names: classes "0", "1", ...).
    by_id = build_semantic_distance("hierarchy", classes=["3", "0"], hierarchy_file=path)
    assert by_id(torch.tensor([0]), torch.tensor([1])).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="lacks 2 of .*integer ids.*by position only"):
        build_semantic_distance("hierarchy", classes=["apple", "pear"], hierarchy_file=path)


ILSVRC_TREE = "/work/shared/data/hierarchies/ilsvrc_wordnet.parent-child.mintree.txt"
IMAGENETTE = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916",
              "n03417042", "n03425413", "n03445777", "n03888257"]  # fmt: skip


@pytest.mark.skipif(not os.path.isfile(ILSVRC_TREE), reason="Barz & Denzler's ILSVRC tree not available")
def test_ilsvrc_tree_with_a_ten_class_subset():
    from pml_shrewd.semantic_distances import build_semantic_distance

    provider = build_semantic_distance("hierarchy", classes=IMAGENETTE, hierarchy_file=ILSVRC_TREE)
    assert provider.num_ids == 10 and provider.depth == 18
    # tench (0) and English springer (1) meet at vertebrate (n01471682, height 10); before, id 1
    # was the tree's second leaf (goldfish, n01443537): 0.056.
    assert provider.lcs(0, 1) == "n01471682"
    assert provider(torch.tensor([0]), torch.tensor([1])).item() == pytest.approx(10 / 18)
    with pytest.raises(ValueError, match="lacks 1 of the data set's 11 classes: 'n99999999'"):
        build_semantic_distance("hierarchy", classes=IMAGENETTE + ["n99999999"], hierarchy_file=ILSVRC_TREE)


# ----------------------------------------------------------------------------- build_semantic_distance


def test_build_semantic_distance_from_explicit_settings(tmp_path):
    from pml_shrewd.semantic_distances import SEMANTIC_KINDS, build_semantic_distance

    assert SEMANTIC_KINDS == ("hierarchy", "label", "sentence")
    label = build_semantic_distance("label", classes=["a", "b", "c"])
    assert isinstance(label, LabelDistance) and label.num_ids == 3
    assert build_semantic_distance("label", captions=["x", "y"]).num_ids == 2
    with pytest.raises(ValueError, match="kind must be one of"):
        build_semantic_distance("wordnet", classes=["a"])
    with pytest.raises(ValueError, match="needs classes= .* or captions="):
        build_semantic_distance("label")
    with pytest.raises(ValueError, match="captioned data has no class hierarchy"):
        build_semantic_distance("hierarchy", captions=["a dog"])
    with pytest.raises(TypeError, match="not one string"):
        build_semantic_distance("label", classes="abc")
    with pytest.raises(ValueError, match="empty"):
        build_semantic_distance("label", classes=[])


# ----------------------------------------------------------------------------- single definitions, layering

PACKAGE = Path(__file__).resolve().parents[1] / "pml_shrewd"


def _sources():
    return {p.relative_to(PACKAGE).as_posix(): p.read_text() for p in PACKAGE.rglob("*.py")}


def _code_strings(text):
    """String constants of a module's code (docstrings left out)."""
    import ast

    tree = ast.parse(text)
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
    ]


def test_cache_folder_and_default_sentence_model_are_defined_once():
    strings = {name: _code_strings(text) for name, text in _sources().items()}
    cache = [
        f
        for f, ss in strings.items()
        if any("PML_SHREWD_CACHE" in x or re.search(r"(^|/)\.cache(/|$)", x) for x in ss)
    ]
    assert cache == ["_cache.py"]
    model = [f for f, ss in strings.items() if any("all-MiniLM-L6-v2" in x for x in ss)]
    assert model == ["semantic_distances/sentence.py"]


def test_cache_dir_honours_the_environment(monkeypatch, tmp_path):
    from pml_shrewd.models.weights import default_cache_dir
    from pml_shrewd.utils import cache_dir

    monkeypatch.setenv("PML_SHREWD_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" == default_cache_dir()
    monkeypatch.delenv("PML_SHREWD_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "pml_shrewd"


def test_semantic_distances_import_no_higher_layer():
    import ast

    for name, text in _sources().items():
        if not name.startswith("semantic_distances/"):
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom):
                target = "." * node.level + (node.module or "")
                assert not any(target.startswith(f"..{up}") for up in ("data", "training", "losses",
                        "retrieval", "models", "cli")), f"{name} imports {target}"  # fmt: skip
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("pml_shrewd.") for a in node.names), name
