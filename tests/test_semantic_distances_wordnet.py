"""WordNet loading (nltk data path or Debian files) and WordNet/CIFAR hierarchies."""

from __future__ import annotations

import functools
import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pml_shrewd.semantic_distances import (
    HierarchyDistance,
    WordNetNotFoundError,
    load_wordnet,
    synset_to_wnid,
)
from pml_shrewd.semantic_distances.wordnet import wordnet_synset

RESOURCES = Path(__file__).resolve().parents[1] / "pml_shrewd" / "semantic_distances" / "resources"
BARZ_CIFAR100 = Path("/work/shared/data/hierarchies/cifar100_cifar.parent-child.txt")
DEBIAN_WORDNET = Path("/usr/share/wordnet")


@pytest.fixture(scope="module")
def wn():
    try:
        return load_wordnet()
    except WordNetNotFoundError as err:
        pytest.skip(f"WordNet not installed (run .ci/install-wordnet.sh): {err}")


def _run(code: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("NLTK_DATA", "PML_SHREWD_WORDNET_DIR")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


# The fresh processes import wordnet.py (stdlib + nltk + pml_shrewd._cache) under empty
# stand-ins for its parent packages, to skip importing torch (checked).
_PACKAGE = RESOURCES.parents[1]
_LOAD_MODULE = (
    "import sys, types\n"
    f"for name, path in (('pml_shrewd', {str(_PACKAGE)!r}), "
    f"('pml_shrewd.semantic_distances', {str(RESOURCES.parent)!r})):\n"
    "    pkg = types.ModuleType(name); pkg.__path__ = [path]; sys.modules[name] = pkg\n"
    "import pml_shrewd.semantic_distances.wordnet as m\n"
    "assert 'torch' not in sys.modules\n"
)


@functools.lru_cache(maxsize=1)
def _nltk_has_own_wordnet() -> bool:
    out = _run(
        "import nltk\ntry:\n nltk.data.find('corpora/wordnet.zip')\nexcept LookupError:\n"
        " try:\n  nltk.data.find('corpora/wordnet')\n except LookupError:\n  print('absent')",
        {},
    )
    return "absent" not in out.stdout


# ----------------------------------------------------------------------------- loading


def test_lexnames_resource_is_the_standard_table():
    lines = (RESOURCES / "lexnames").read_text().splitlines()
    assert len(lines) == 45
    pos_of = {"noun": "1", "verb": "2", "adj": "3", "adv": "4"}
    for i, line in enumerate(lines):
        number, name, pos = line.split("\t")
        assert number == f"{i:02d}" and pos == pos_of[name.split(".")[0]]
    assert lines[0] == "00\tadj.all\t3" and lines[44] == "44\tadj.ppl\t3" and lines[5] == "05\tnoun.animal\t1"
    man = Path("/usr/share/man/man5/lexnames.5WN.gz")
    if man.is_file():  # same numbers and names as the man page's table
        table = [ln.split("\t")[:2] for ln in gzip.open(man, "rt") if ln[:2].isdigit() and "\t" in ln]
        assert [[n, name.strip()] for n, name in table] == [ln.split("\t")[:2] for ln in lines]


def test_load_wordnet_reader(wn):
    assert wn.get_version() == "3.0"
    assert load_wordnet() is wn  # cached
    dog, cat = wn.synset("dog.n.01"), wn.synset("cat.n.01")
    assert dog.lowest_common_hypernyms(cat) == [wn.synset("carnivore.n.01")]


@pytest.mark.skipif(not (DEBIAN_WORDNET / "data.noun").is_file(), reason="Debian wordnet-base not installed")
def test_debian_layout_built_in_a_fresh_process(tmp_path):
    if _nltk_has_own_wordnet():
        pytest.skip("nltk's own WordNet is installed, so the Debian fallback is not used")
    out = _run(
        _LOAD_MODULE + "wn = m.load_wordnet(); print(wn.get_version(), m.wordnet_synset('n02084071').name())",
        {"PML_SHREWD_CACHE": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3.0", "dog.n.01"]
    layout = tmp_path / "nltk_data" / "corpora" / "wordnet"
    assert (layout / "lexnames").read_text() == (RESOURCES / "lexnames").read_text()
    assert (layout / "data.noun").stat().st_size == (DEBIAN_WORDNET / "data.noun").stat().st_size
    assert not any(p.name.startswith(".wordnet-") for p in layout.parent.iterdir())  # no temp dirs left


def test_missing_wordnet_says_how_to_install(tmp_path):
    if _nltk_has_own_wordnet():
        pytest.skip("nltk's own WordNet is installed, cannot simulate a missing one")
    out = _run(
        _LOAD_MODULE + "m.load_wordnet()",
        {"PML_SHREWD_CACHE": str(tmp_path / "cache"), "PML_SHREWD_WORDNET_DIR": str(tmp_path / "none")},
    )
    assert out.returncode != 0
    assert "WordNetNotFoundError" in out.stderr
    assert "nltk.downloader wordnet" in out.stderr and "wordnet-base wordnet-sense-index" in out.stderr


# ----------------------------------------------------------------------------- synsets and wnids


def test_wnid_and_names_resolve(wn):
    assert wordnet_synset("n02084071") == wn.synset("dog.n.01")
    assert synset_to_wnid(wn.synset("dog.n.01")) == "n02084071"
    assert wordnet_synset(wn.synset("cat.n.01")) == wn.synset("cat.n.01")


@pytest.mark.parametrize("bad", ["dgo.n.01", "dog.n.99", "n99999999", "n0208407", "dog"])
def test_unknown_synset_or_wnid_named(wn, bad):
    with pytest.raises(ValueError, match=repr(bad)):
        HierarchyDistance.from_wordnet(["cat.n.01", bad])


def test_from_wordnet_rejects_non_nouns_duplicates_and_empty(wn):
    with pytest.raises(ValueError, match="not a noun"):
        HierarchyDistance.from_wordnet(["cat.n.01", "run.v.01"])
    with pytest.raises(ValueError, match="same synset dog.n.01"):
        HierarchyDistance.from_wordnet(["dog.n.01", "cat.n.01", "n02084071"])
    with pytest.raises(ValueError, match="at least one"):
        HierarchyDistance.from_wordnet([])
    with pytest.raises(TypeError, match="int"):
        HierarchyDistance.from_wordnet(["dog.n.01", 3])


# ----------------------------------------------------------------------------- the tree rule


def test_dog_under_canine_so_cat_dog_closer_than_cat_deer(wn):
    provider = HierarchyDistance.from_wordnet(["cat.n.01", "dog.n.01", "deer.n.01"])
    d = provider.matrix()
    assert d[0, 1] < d[0, 2]
    assert provider.parent("dog.n.01") == "canine.n.02"  # not domestic_animal.n.01
    assert provider.lcs("cat.n.01", "dog.n.01") == "carnivore.n.01"
    assert provider.lcs(0, 2) == "placental.n.01"
    assert provider.root == "placental.n.01"  # the chain above the deepest shared node is dropped
    assert d[0, 2] == 1.0 and d[1, 2] == 1.0


def test_wnids_give_the_same_tree_as_names(wn):
    names = ["cat.n.01", "dog.n.01", "deer.n.01", "car.n.01"]
    wnids = [synset_to_wnid(wn.synset(n)) for n in names]
    assert all(w.startswith("n") and len(w) == 9 for w in wnids)
    a, b = HierarchyDistance.from_wordnet(names), HierarchyDistance.from_wordnet(wnids)
    assert a.classes == b.classes == names
    assert torch.equal(a.matrix(), b.matrix())


def _reference_parent(s):
    """Parent by the documented rule, from nltk's own enumeration of all hypernym paths."""
    paths = s.hypernym_paths()  # every root-to-s path (hypernyms and instance hypernyms)
    longest = max(len(p) for p in paths)
    return min(p[-2].name() for p in paths if len(p) == longest)


def test_every_parent_follows_the_longest_path_rule(wn):
    provider = HierarchyDistance.cifar10()
    for node in provider.nodes:
        if node != provider.root:
            assert provider.parent(node) == _reference_parent(wn.synset(node)), node


def test_collapse_unary_keeps_classes_and_branching(wn):
    full = HierarchyDistance.cifar10()
    short = HierarchyDistance.cifar10(collapse_unary=True)
    assert short.classes == full.classes and short.depth < full.depth
    for node in short.nodes:  # every inner node now branches
        kids = [n for n in short.nodes if short.parent(n) == node]
        assert node in short.classes or len(kids) != 1
    # same lcs for every pair: only heights change
    for i in range(10):
        for j in range(10):
            assert short.lcs(i, j) == full.lcs(i, j)


# ----------------------------------------------------------------------------- CIFAR


def _check_distance_matrix(m: torch.Tensor, n: int) -> None:
    assert m.shape == (n, n) and m.dtype == torch.float32
    assert torch.equal(m, m.T) and (m.diagonal() == 0).all()
    assert m.min() >= 0 and m.max() <= 1
    off = m[~torch.eye(n, dtype=torch.bool)]
    assert (off > 0).all()  # distinct classes never coincide
    assert m.max() == 1


def test_cifar100_wordnet(wn):
    provider = HierarchyDistance.cifar100()
    assert provider.num_ids == 100 and len(provider.names) == 100
    assert provider.names == sorted(provider.names)  # CIFAR-100's standard order is alphabetical
    classes_txt = Path("/work/shared/data/cifar100/classes.txt")
    if classes_txt.is_file():
        assert provider.names == classes_txt.read_text().split()
    m = provider.matrix()
    _check_distance_matrix(m, 100)
    i = provider.names.index
    assert m[i("maple_tree"), i("oak_tree")] < m[i("maple_tree"), i("rocket")]
    assert m[i("leopard"), i("tiger")] < m[i("leopard"), i("wolf")] < m[i("leopard"), i("trout")]
    assert m[i("bus"), i("streetcar")] < m[i("bus"), i("house")]
    d = provider(torch.tensor([i("apple"), i("pear")]), torch.tensor([i("orange")]))
    assert d.device.type == "cpu" and d.shape == (2, 1)


@pytest.mark.skipif(not BARZ_CIFAR100.is_file(), reason="Barz & Denzler's hierarchy file not present")
def test_cifar100_barz_vs_wordnet(wn):
    barz = HierarchyDistance.cifar100(source="barz", path=BARZ_CIFAR100)
    ours = HierarchyDistance.cifar100()
    assert barz.names == ours.names and barz.classes == [str(k) for k in range(100)]
    for provider in (barz, ours):
        m = provider.matrix()
        assert m.shape == (100, 100) and torch.equal(m, m.T) and (m.diagonal() == 0).all()
        assert m.min() >= 0 and m.max() <= 1
        i = provider.names.index
        assert m[i("maple_tree"), i("oak_tree")] < m[i("maple_tree"), i("rocket")]
    iu = np.triu_indices(100, 1)
    corr = np.corrcoef(barz.matrix().numpy()[iu], ours.matrix().numpy()[iu])[0, 1]
    print(f"\nPearson correlation, Barz & Denzler vs WordNet CIFAR-100 distances: {corr:.3f}")
    assert corr > 0.8


def test_cifar10(wn):
    provider = HierarchyDistance.cifar10()
    assert provider.names == [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    assert provider.classes[1] == "car.n.01"
    m = provider.matrix()
    _check_distance_matrix(m, 10)
    i = provider.names.index
    assert m[i("cat"), i("dog")] < m[i("cat"), i("deer")] < m[i("cat"), i("truck")]
    assert m[i("automobile"), i("truck")] < m[i("automobile"), i("ship")]


def test_every_shipped_synset_exists_and_is_a_noun(wn):
    for resource in ("cifar100_wordnet.txt", "cifar10_wordnet.txt"):
        for line in (RESOURCES / resource).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                _, synset = line.split()
                assert wn.synset(synset).pos() == "n", synset


def test_from_image_folder(wn, tmp_path):
    for wnid in ["n02084071", "n02121620", "n02430045"]:  # dog, cat, deer
        (tmp_path / wnid).mkdir()
    (tmp_path / "README.txt").write_text("not a class")
    provider = HierarchyDistance.from_image_folder(tmp_path)
    assert provider.names == ["n02084071", "n02121620", "n02430045"]
    assert provider.classes == ["dog.n.01", "cat.n.01", "deer.n.01"]
    mapped = HierarchyDistance.from_image_folder(
        ["cat", "dog"], mapping={"cat": "cat.n.01", "dog": "dog.n.01"}
    )
    assert mapped.names == ["cat", "dog"] and mapped.classes == ["cat.n.01", "dog.n.01"]
    with pytest.raises(ValueError, match="'cow'"):
        HierarchyDistance.from_image_folder(["cat", "cow"], mapping={"cat": "cat.n.01"})
    with pytest.raises(FileNotFoundError, match="no such directory"):
        HierarchyDistance.from_image_folder(tmp_path / "missing")


# ----------------------------------------------------------------------------- readable names, CIFAR names by name


def test_readable_names(wn):
    from pml_shrewd.semantic_distances import readable_names

    names = readable_names(["n02102040", "n01440764", "dog.n.01", "aquarium_fish", "n99999999"])
    assert names == ["English springer", "tench", "dog", "aquarium_fish", "n99999999"]


def test_readable_names_without_wordnet_keep_the_ids(monkeypatch):
    import pml_shrewd.semantic_distances.wordnet as wordnet_module

    def missing():
        raise WordNetNotFoundError("not installed")

    monkeypatch.setattr(wordnet_module, "load_wordnet", missing)
    assert wordnet_module.readable_names(["n02102040", "cat"]) == ["n02102040", "cat"]


def test_cifar_class_names_map_to_wordnet_by_name(wn):
    from pml_shrewd.semantic_distances import build_semantic_distance

    cifar10 = HierarchyDistance.cifar10()
    same = build_semantic_distance("hierarchy", classes=cifar10.names)
    assert same.classes == cifar10.classes and torch.equal(same.matrix(), cifar10.matrix())
    # Another order (a folder listing, a re-indexed data set): matched by name, not by position.
    order = [3, 0, 9, 5, 1, 2, 4, 6, 7, 8]
    shuffled = build_semantic_distance("hierarchy", classes=[cifar10.names[i] for i in order])
    assert torch.equal(shuffled.matrix(), cifar10.matrix()[order][:, order])
    assert shuffled.names == [cifar10.names[i] for i in order]
