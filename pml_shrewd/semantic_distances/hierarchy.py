"""Class-hierarchy distances (Barz & Denzler), from an edge list, a file or WordNet."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from .matrix import _CachedMatrixDistance
from .wordnet import load_wordnet, wordnet_synset

__all__ = ["HierarchyDistance"]

_INT = re.compile(r"^\d+$")
# Rows of the (rows x C x depth) comparison done per chunk when building the matrix.
_CHUNK_ELEMENTS = 1 << 24


def _read_mapping(resource: str) -> list[tuple[str, str]]:
    text = resources.files("pml_shrewd.semantic_distances").joinpath("resources", resource).read_text()
    pairs = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, synset = line.split()
            pairs.append((name, synset))
    return pairs


def read_edges(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``(parent, child)`` pairs of a ``"parent child"`` file (``#`` comments, blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HierarchyDistance.from_file: no such file {str(path)!r}")
    edges = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{path}:{lineno}: expected 'parent child', got {line!r}")
        edges.append((fields[0], fields[1]))
    return edges


def wordnet_class_mapping() -> dict[str, str]:
    """CIFAR-10 and CIFAR-100 class name -> WordNet synset (the shipped ``resources/`` tables)."""
    return dict(_read_mapping("cifar10_wordnet.txt") + _read_mapping("cifar100_wordnet.txt"))


class HierarchyDistance(_CachedMatrixDistance):
    """Semantic distance from a class hierarchy (a rooted tree).

    ``d(u, v) = height(lcs(u, v)) / height(root)`` (Barz & Denzler, "Hierarchy-based
    Image Embeddings for Semantic Image Retrieval", WACV 2019), the hierarchy
    distance used by SHREWD/SHRED (Arponen & Bishop, arXiv 2005.04917). ``lcs`` is
    the lowest common subsumer (deepest shared ancestor) and ``height(n)`` the
    length of the longest path from ``n`` down to a leaf. Leaves have height 0, so
    ``d(u, u) = 0``; classes that meet only at the root get 1. (The diagonal is 0
    even for a class that is an inner node.) The ``C x C`` matrix is computed once
    and indexed per batch.

    Args:
        edges: ``(parent, child)`` pairs; node names are compared as strings.
        classes: the node of each class id. Default: the leaves, sorted numerically
            when all leaf names are integers (Barz & Denzler's files: ids 0..C-1) and
            lexicographically otherwise (sorted ImageNet wnids = ILSVRC class order).
        names: optional human-readable class names (default: ``classes``).

    Example::

        provider = HierarchyDistance.cifar100()            # WordNet CIFAR-100 tree
        provider = HierarchyDistance([("animal", "cat"), ("animal", "dog"), ("root", "animal"), ("root", "car")])
        d = provider(torch.tensor([0, 1]), torch.tensor([2]))  # cat, car vs dog
    """

    def __init__(
        self,
        edges: Iterable[Sequence[Any]],
        classes: Sequence[Any] | None = None,
        *,
        names: Sequence[str] | None = None,
    ):
        parent: dict[str, str] = {}
        children: dict[str, list[str]] = {}
        for k, edge in enumerate(edges):
            if isinstance(edge, str) or len(edge) != 2:
                raise ValueError(f"HierarchyDistance edge {k} must be a (parent, child) pair, got {edge!r}")
            p, c = str(edge[0]), str(edge[1])
            if p == c:
                raise ValueError(f"HierarchyDistance edge {k} links node {p!r} to itself (a cycle)")
            if c in parent:
                if parent[c] == p:
                    continue  # repeated edge
                raise ValueError(
                    f"HierarchyDistance needs a tree, but node {c!r} has two parents: {parent[c]!r} and {p!r}"
                )
            parent[c] = p
            children.setdefault(p, []).append(c)
            children.setdefault(c, [])
        if not children:
            raise ValueError("HierarchyDistance needs at least one (parent, child) edge")
        roots = [n for n in children if n not in parent]
        if len(roots) != 1:
            if not roots:
                raise ValueError("HierarchyDistance: the edges form a cycle (no node without a parent)")
            raise ValueError(
                f"HierarchyDistance needs a single root, found {len(roots)}: {roots[:10]}"
                + (" ..." if len(roots) > 10 else "")
            )
        root = roots[0]
        # Breadth-first from the root; nodes never reached hang in a cycle.
        order, depth = [root], {root: 0}
        for n in order:
            for c in children[n]:
                depth[c] = depth[n] + 1
                order.append(c)
        if len(order) != len(children):
            stuck = sorted(set(children) - set(depth))
            raise ValueError(f"HierarchyDistance: the edges contain a cycle through nodes {stuck[:10]}")
        height: dict[str, int] = {}
        for n in reversed(order):  # children before parents
            height[n] = 1 + max(height[c] for c in children[n]) if children[n] else 0

        if classes is None:
            leaves = [n for n in order if not children[n]]
            if all(_INT.match(n) for n in leaves):
                classes = sorted(leaves, key=int)
            else:
                classes = sorted(leaves)
        classes = [str(c) for c in classes]
        if not classes:
            raise ValueError("HierarchyDistance needs at least one class")
        missing = [f"{c!r} (id {i})" for i, c in enumerate(classes) if c not in depth]
        if len(missing) == 1:
            raise ValueError(f"HierarchyDistance: class node {missing[0]} is not in the hierarchy")
        if missing:
            raise ValueError(
                f"HierarchyDistance: {len(missing)} of {len(classes)} class nodes are not in the "
                f"hierarchy: {', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else "")
            )
        seen: dict[str, int] = {}
        for i, c in enumerate(classes):
            if c in seen:
                raise ValueError(f"HierarchyDistance: node {c!r} is given for both class {seen[c]} and {i}")
            seen[c] = i
        if names is not None and len(names) != len(classes):
            raise ValueError(f"HierarchyDistance: got {len(names)} names for {len(classes)} classes")

        self.classes: list[str] = classes
        self.names: list[str] = list(names) if names is not None else list(classes)
        self.root: str = root
        self._parent = parent
        self._height = height
        self._node_depth = depth
        self._set_matrix(self._compute_matrix())

    # --- tree queries -------------------------------------------------------------
    @property
    def depth(self) -> int:
        """The tree's height: edges on the longest root-to-leaf path (the normaliser of d)."""
        return self._height[self.root]

    @property
    def nodes(self) -> list[str]:
        """All node names, root first (breadth-first)."""
        return list(self._node_depth)

    def height(self, node: str) -> int:
        """Longest path length from ``node`` down to a leaf."""
        return self._height[self._node(node)]

    def parent(self, node: str) -> str | None:
        """Parent of ``node`` (``None`` for the root)."""
        return self._parent.get(self._node(node))

    def ancestors(self, node: str | int) -> list[str]:
        """``node`` (a node name or class id) and its ancestors up to the root."""
        n = self._node(node)
        path = [n]
        while path[-1] in self._parent:
            path.append(self._parent[path[-1]])
        return path

    def lcs(self, a: str | int, b: str | int) -> str:
        """Lowest common subsumer of two nodes (node names or class ids)."""
        above_a = set(self.ancestors(a))
        return next(n for n in self.ancestors(b) if n in above_a)

    def _node(self, node: str | int) -> str:
        if isinstance(node, int) and not isinstance(node, bool):
            if not 0 <= node < len(self.classes):
                raise IndexError(f"class id {node} outside [0, {len(self.classes) - 1}]")
            return self.classes[node]
        if str(node) not in self._node_depth:
            raise KeyError(f"node {node!r} is not in the hierarchy")
        return str(node)

    def _compute_matrix(self) -> torch.Tensor:
        # Root-to-class paths as rows of node indices (-1 padded). In a tree two
        # paths agree on a prefix; its last node is the lcs.
        index = {n: i for i, n in enumerate(self._node_depth)}
        paths = [list(reversed(self.ancestors(c))) for c in self.classes]
        width = max(len(p) for p in paths)
        P = torch.full((len(paths), width), -1, dtype=torch.long)
        for i, p in enumerate(paths):
            P[i, : len(p)] = torch.tensor([index[n] for n in p])
        heights = torch.tensor([self._height[n] for n in self._node_depth], dtype=torch.float64)
        C = len(paths)
        out = torch.empty(C, C, dtype=torch.float64)
        rows = max(1, _CHUNK_ELEMENTS // max(1, C * width))
        for start in range(0, C, rows):
            Pa = P[start : start + rows, None, :]
            same = (Pa == P[None, :, :]) & (Pa >= 0)
            shared = same.long().cumprod(-1).sum(-1)  # >= 1: the root is shared
            lcs = Pa.expand(-1, C, -1).gather(-1, (shared - 1)[..., None])[..., 0]
            out[start : start + rows] = heights[lcs]
        if self.depth > 0:
            out /= self.depth
        out.fill_diagonal_(0.0)
        return out

    def __repr__(self) -> str:
        return f"HierarchyDistance(num_classes={self.num_ids}, nodes={len(self._node_depth)}, depth={self.depth}, root={self.root!r})"

    # --- constructors -------------------------------------------------------------
    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        classes: Sequence[Any] | None = None,
        *,
        names: Sequence[str] | None = None,
    ) -> HierarchyDistance:
        """Read ``"parent child"`` lines (Barz & Denzler's ``*.parent-child.txt`` format).

        Blank lines and ``#`` comments are skipped. ``classes`` names the node of each
        class id (e.g. a data set's wnids, any subset of the tree's nodes; classes the
        tree lacks are refused by name). With ``classes=None`` the leaves are the
        classes (numeric order for integer names: Barz & Denzler's CIFAR-100 file
        gives ids 0-99 in the standard class order; sorted names otherwise).
        ``build_semantic_distance(classes=..., hierarchy_file=...)`` does the matching
        for a data set's class names.
        """
        return cls(read_edges(path), classes, names=names)

    @classmethod
    def from_wordnet(
        cls,
        synsets_or_wnids: Sequence[Any],
        *,
        names: Sequence[str] | None = None,
        collapse_unary: bool = False,
    ) -> HierarchyDistance:
        """Build the tree above WordNet noun synsets (``dog.n.01``) or ImageNet wnids (``n02084071``).

        WordNet is a DAG (``dog.n.01`` has hypernyms ``canine.n.02`` and
        ``domestic_animal.n.01``). To get a tree, each node keeps ONE parent: the
        hypernym on its LONGEST hypernym path to ``entity.n.01`` (the hypernym with
        the greatest maximal depth; ties broken by the lexicographically smallest
        synset name; instance hypernyms count as hypernyms). This keeps dog under
        canine, so cat and dog meet at ``carnivore.n.01``, closer than cat and deer.
        The tree holds the classes and their ancestors only; its root is the
        deepest node shared by all classes (the unary chain above it is dropped,
        so classes meeting only there get distance 1). With ``collapse_unary=True``
        inner nodes with a single child are removed too (this shortens heights);
        by default they are kept, as WordNet has them.

        Raises:
            ValueError: naming an unknown synset or wnid, a non-noun, or a duplicate.
        """
        load_wordnet()
        items = list(synsets_or_wnids)
        if not items:
            raise ValueError("HierarchyDistance.from_wordnet needs at least one synset or wnid")
        synsets = [wordnet_synset(x) for x in items]
        first: dict[str, int] = {}
        for i, (item, s) in enumerate(zip(items, synsets)):
            if s.pos() != "n":
                raise ValueError(
                    f"HierarchyDistance.from_wordnet: {item!r} is not a noun synset ({s.name()})"
                )
            if s.name() in first:
                raise ValueError(
                    f"HierarchyDistance.from_wordnet: classes {first[s.name()]} and {i} are the same synset {s.name()}"
                )
            first[s.name()] = i

        longest: dict[str, int] = {}

        def hypernyms(s: Any) -> list[Any]:
            return s.hypernyms() + s.instance_hypernyms()

        def longest_up(s: Any) -> int:
            # Longest hypernym path length from s to the root (memoised, iterative).
            stack = [s]
            while stack:
                top = stack[-1]
                if top.name() in longest:
                    stack.pop()
                    continue
                pending = [h for h in hypernyms(top) if h.name() not in longest]
                if pending:
                    stack.extend(pending)
                else:
                    hs = hypernyms(top)
                    longest[top.name()] = 1 + max(longest[h.name()] for h in hs) if hs else 0
                    stack.pop()
            return longest[s.name()]

        parent: dict[str, str] = {}
        for s in synsets:
            while s.name() not in parent:
                hs = hypernyms(s)
                if not hs:
                    break
                best = min(hs, key=lambda h: (-longest_up(h), h.name()))
                parent[s.name()] = best.name()
                s = best
        classes = [s.name() for s in synsets]
        children: dict[str, list[str]] = {}
        for c, p in parent.items():
            children.setdefault(p, []).append(c)
        class_set = set(classes)
        root = next(n for n in children if n not in parent) if parent else classes[0]
        # Drop the unary chain above the deepest node shared by all classes.
        while root not in class_set and len(children.get(root, [])) == 1:
            root = children[root][0]
        keep = {root}
        stack = [root]
        while stack:
            n = stack.pop()
            for c in children.get(n, []):
                keep.add(c)
                stack.append(c)
        edges = [(p, c) for c, p in parent.items() if c in keep and c != root]
        if collapse_unary:
            edges = _collapse_unary(edges, class_set)
        if not edges:  # a single class: a one-node "tree" still needs an edge
            edges = [("<root>", root)]
        return cls(sorted(edges), classes, names=names)

    @classmethod
    def from_image_folder(
        cls,
        root_or_classes: str | os.PathLike | Sequence[str] | Any,
        *,
        mapping: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> HierarchyDistance:
        """WordNet hierarchy for ImageFolder-style class names (e.g. ImageNet's wnid folders).

        ``root_or_classes`` is an ImageFolder root (its sub-directory names, sorted as
        torchvision's ``ImageFolder`` does), a dataset with ``.classes``, or a list of
        names. Each name is a wnid or synset name, or is translated by ``mapping``.

        Example::

            provider = HierarchyDistance.from_image_folder("imagenet/train")  # n01440764, ...
        """
        if isinstance(root_or_classes, (str, os.PathLike)):
            root = Path(root_or_classes)
            if not root.is_dir():
                raise FileNotFoundError(
                    f"HierarchyDistance.from_image_folder: no such directory {str(root)!r}"
                )
            folder_names = sorted(e.name for e in os.scandir(root) if e.is_dir())
        elif hasattr(root_or_classes, "classes"):
            folder_names = list(root_or_classes.classes)
        else:
            folder_names = list(root_or_classes)
        if mapping is not None:
            missing = [n for n in folder_names if n not in mapping]
            if missing:
                raise ValueError(
                    f"HierarchyDistance.from_image_folder: no synset in mapping for {missing[:10]}"
                )
            synsets = [mapping[n] for n in folder_names]
        else:
            synsets = folder_names
        kwargs.setdefault("names", folder_names)
        return cls.from_wordnet(synsets, **kwargs)

    @classmethod
    def cifar100(
        cls,
        source: str = "wordnet",
        path: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> HierarchyDistance:
        """The CIFAR-100 hierarchy, class ids in the standard (alphabetical) order.

        ``source="wordnet"``: built from WordNet with the shipped class-to-synset
        mapping (``resources/cifar100_wordnet.txt``). ``source="barz"``: Barz &
        Denzler's ``cifar.parent-child.txt``, read from ``path`` (not shipped).
        ``.names`` holds the CIFAR-100 class names either way.
        """
        mapping = _read_mapping("cifar100_wordnet.txt")
        names = [name for name, _ in mapping]
        if source == "wordnet":
            return cls.from_wordnet([s for _, s in mapping], names=names, **kwargs)
        if source == "barz":
            if path is None:
                raise ValueError(
                    "HierarchyDistance.cifar100(source='barz') needs path= to Barz & Denzler's "
                    "cifar.parent-child.txt (github.com/cvjena/semantic-embeddings, Cifar-Hierarchy/)"
                )
            tree = cls.from_file(path, names=names, **kwargs)
            if tree.num_ids != 100:
                raise ValueError(f"{path} has {tree.num_ids} leaf classes, CIFAR-100 has 100")
            return tree
        raise ValueError(f"HierarchyDistance.cifar100: unknown source {source!r}, use 'wordnet' or 'barz'")

    @classmethod
    def cifar10(cls, **kwargs: Any) -> HierarchyDistance:
        """The CIFAR-10 WordNet hierarchy (ids in alphabetical folder order: airplane ... truck)."""
        mapping = _read_mapping("cifar10_wordnet.txt")
        kwargs.setdefault("names", [name for name, _ in mapping])
        return cls.from_wordnet([s for _, s in mapping], **kwargs)


def _collapse_unary(edges: list[tuple[str, str]], keep: set[str]) -> list[tuple[str, str]]:
    """Splice out inner nodes that have exactly one child (class nodes are kept)."""
    parent = {c: p for p, c in edges}
    children: dict[str, list[str]] = {}
    for p, c in edges:
        children.setdefault(p, []).append(c)
    unary = {n for n, cs in children.items() if len(cs) == 1 and n not in keep and n in parent}
    out = []
    for c, p in parent.items():
        if c in unary:
            continue
        while p in unary:
            p = parent[p]
        out.append((p, c))
    return out
