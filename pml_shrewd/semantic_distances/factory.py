"""Choose a semantic-distance provider from explicit settings (no data set object needed).

A trained model saves its settings (``kind``, its ``classes`` or captions, the hierarchy
file, the sentence model); :func:`build_semantic_distance` rebuilds the same provider
from them. ``pml_shrewd.data.semantic_distance_for`` is the thin wrapper for data sets.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from .base import SemanticDistance
from .caption_sets import CaptionSetDistance
from .hierarchy import HierarchyDistance, read_edges, wordnet_class_mapping
from .label import LabelDistance
from .sentence import SentenceEmbeddingDistance, default_sentence_model
from .wordnet import is_wnid, readable_names

__all__ = ["SEMANTIC_KINDS", "build_semantic_distance", "hierarchy_for_classes"]

#: The kinds :func:`build_semantic_distance` builds.
SEMANTIC_KINDS = ("hierarchy", "label", "sentence")

_SYNSET_NAME = re.compile(r"^[\w\-']+\.n\.\d\d$")
_INT = re.compile(r"^\d+$")


def build_semantic_distance(
    kind: str = "hierarchy",
    *,
    classes: Sequence[str] | None = None,
    captions: Sequence[str] | None = None,
    hierarchy_file: str | os.PathLike | None = None,
    sentence_model: str | os.PathLike | None = None,
    caption_sets: Sequence[Sequence[str]] | None = None,
    caption_target: str = "mean",
    caption_seed: int = 0,
) -> SemanticDistance:
    """The provider of ``kind`` for class ids (``classes``), caption ids (``captions``) or image
    ids of images with several captions each (``caption_sets``).

    Id ``i`` stands for ``classes[i]`` (or ``captions[i]``, or ``caption_sets[i]``; the
    caption forms take precedence, ``caption_sets`` first).

    - ``"hierarchy"``: :func:`hierarchy_for_classes` (Barz & Denzler's height-of-LCS
      distance; WordNet, or ``hierarchy_file`` matched to ``classes`` by name).
    - ``"label"``: :class:`LabelDistance` (0 same id, 1 otherwise; the classic baseline).
    - ``"sentence"``: :class:`SentenceEmbeddingDistance` over the captions, or over
      ``"a photo of a <class>"`` (wnids as their WordNet names) for classes;
      ``sentence_model`` defaults to :func:`default_sentence_model`; with ``caption_sets``
      a :class:`CaptionSetDistance` (``caption_target="mean"``: the normalised mean embedding
      of each image's captions, ``"random"``: one caption per image drawn each epoch from
      ``(caption_seed, epoch, id)``).

    Example::

        provider = build_semantic_distance("hierarchy", classes=["cat", "dog", "truck"])
        provider = build_semantic_distance("sentence", captions=["a dog runs", "a red truck"])
        d = provider(torch.tensor([0, 1]), torch.tensor([2]))
    """
    if kind not in SEMANTIC_KINDS:
        raise ValueError(f"semantic distance kind must be one of {SEMANTIC_KINDS}, got {kind!r}")
    if caption_sets is not None:
        if isinstance(caption_sets, str):
            raise TypeError("build_semantic_distance: caption_sets must be a list of caption lists")
        caption_sets = list(caption_sets)
        if kind == "label":
            return LabelDistance(len(caption_sets))
        if kind == "hierarchy":
            raise ValueError("captioned data has no class hierarchy: use the 'sentence' semantic distance")
        return CaptionSetDistance(
            caption_sets,
            target=caption_target,
            seed=caption_seed,
            model=sentence_model or default_sentence_model(),
        )
    if captions is not None:
        if isinstance(captions, str):
            raise TypeError("build_semantic_distance: captions must be a list of strings, not one string")
        captions = list(captions)
    elif classes is None:
        raise ValueError("build_semantic_distance needs classes= (class ids) or captions= (caption ids)")
    else:
        if isinstance(classes, str):
            raise TypeError("build_semantic_distance: classes must be a list of names, not one string")
        classes = [str(c) for c in classes]
        if not classes:
            raise ValueError("build_semantic_distance: classes is empty")
    if kind == "label":
        return LabelDistance(len(captions if captions is not None else classes))
    if kind == "sentence":
        texts = (
            captions
            if captions is not None
            else [f"a photo of a {name.replace('_', ' ')}" for name in readable_names(classes)]
        )
        return SentenceEmbeddingDistance(texts, model=sentence_model or default_sentence_model())
    if captions is not None:
        raise ValueError("captioned data has no class hierarchy: use the 'sentence' semantic distance")
    return hierarchy_for_classes(classes, hierarchy_file)


def hierarchy_for_classes(
    classes: Sequence[str], hierarchy_file: str | os.PathLike | None = None
) -> HierarchyDistance:
    """The class hierarchy of ``classes`` (class id ``i`` is ``classes[i]``), names matched.

    Without ``hierarchy_file``: WordNet (:meth:`HierarchyDistance.from_wordnet`) above
    each class's synset: wnids (``n02084071``) and synset names (``dog.n.01``) as they
    are, CIFAR-10/100 class names through the shipped tables, other names as
    ``<name>.n.01``.

    With ``hierarchy_file`` (``"parent child"`` lines, e.g. Barz & Denzler's trees):
    each class is the tree node of the same name, so a data set holding a subset of
    the tree's classes (10 wnids of the ILSVRC tree) gets its own ids right, and
    classes the tree lacks raise ``ValueError`` naming them. One exception: a tree
    whose nodes are integer ids with exactly ``len(classes)`` leaves ``0 .. C-1``
    (Barz & Denzler's CIFAR-100 file) takes class ``i`` as node ``i`` when no class
    name is a node (the data set's names in the tree's class order).

    Example::

        hierarchy_for_classes(["n01440764", "n02102040"], "ilsvrc_wordnet.parent-child.mintree.txt")
    """
    classes = [str(c) for c in classes]
    if hierarchy_file is None:
        known = wordnet_class_mapping()
        synsets = [c if is_wnid(c) or _SYNSET_NAME.match(c) else known.get(c, f"{c}.n.01") for c in classes]
        return HierarchyDistance.from_wordnet(synsets, names=classes)
    edges = read_edges(hierarchy_file)
    nodes = {n for edge in edges for n in edge}
    missing = [c for c in classes if c not in nodes]
    if not missing:
        return HierarchyDistance(edges, classes, names=classes)
    parents = {p for p, _ in edges}
    leaves = sorted(n for n in nodes if n not in parents)
    integer_tree = all(_INT.match(n) for n in leaves)
    if integer_tree and len(missing) == len(classes):
        if sorted(int(n) for n in leaves) == list(range(len(classes))):
            return HierarchyDistance(edges, None, names=classes)
    hint = (
        f"; its {len(leaves)} leaves are integer ids, which stand for a data set's classes by "
        "position only when it has exactly that many classes"
        if integer_tree
        else ""
    )
    raise ValueError(
        f"hierarchy file {os.fspath(hierarchy_file)!r} lacks {len(missing)} of the data set's "
        f"{len(classes)} classes: {', '.join(map(repr, missing[:10]))}"
        + (" ..." if len(missing) > 10 else "")
        + hint
    )
