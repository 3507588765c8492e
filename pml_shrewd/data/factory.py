"""Pick a data set layout and the matching semantic-distance provider."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from .._cache import cache_dir
from ..semantic_distances import build_semantic_distance
from .base import ImageSamples, SampleView, split_indices, subsample
from .captions import CaptionedImages
from .cifar import TorchvisionCIFAR
from .folder import FolderImages, ImageFiles
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


def folder_splits(path: str | os.PathLike) -> tuple[str, str] | None:
    """``(path/train, path/test)`` (or ``path/val``) when the folder holds both, else ``None``."""
    path = os.fspath(path)
    test_dir = next(
        (os.path.join(path, d) for d in ("test", "val") if os.path.isdir(os.path.join(path, d))), None
    )
    train_dir = os.path.join(path, "train")
    return (train_dir, test_dir) if os.path.isdir(train_dir) and test_dir is not None else None


def build_dataset(
    dataset: str,
    path: str | os.PathLike,
    transform: Callable | None = None,
    split: str = "train",
) -> ImageSamples:
    """One collection to encode or index, e.g. for ``pml-shrewd index``.

    A folder without ``train/`` and ``test/`` (or ``val/``) is taken whole: a
    :class:`FolderImages` when it has class subfolders, else the plain images under
    it (:class:`ImageFiles`). Any other layout (``dataset`` as for
    :func:`build_datasets`, the same detection) gives its ``split`` (``"train"`` or
    ``"test"``).

    Example::

        photos = build_dataset("auto", "~/Pictures", model.transform())
    """
    if split not in ("train", "test"):
        raise ValueError(f"build_dataset: split must be 'train' or 'test', got {split!r}")
    path = os.path.expanduser(os.fspath(path))
    kind = infer_dataset_kind(path) if dataset == "auto" else dataset
    if kind == "folder" and os.path.isdir(path) and folder_splits(path) is None:
        if any(e.is_dir() for e in os.scandir(path)):
            return FolderImages(path, transform)
        return ImageFiles.from_folder(path, transform)
    train, test = build_datasets(kind, path, transform, transform)
    return train if split == "train" else test


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
    *,
    caption_target: str = "mean",
    train_captions: Sequence[int] | None = None,
    held_out_captions: Sequence[int] | str | None = None,
    caption_splits: str | os.PathLike | None = "auto",
    query_split: str = "test",
) -> tuple[SampleView, SampleView]:
    """Train and test data sets (database and queries) of one layout.

    Args:
        dataset: ``"cifar10"``/``"cifar100"`` (torchvision; ``path`` is its root),
            ``"npz"`` (``x_train``/``y_train``/``x_test``/``y_test``/``classes``),
            ``"folder"`` (``path/train/<class>/`` and ``path/test/<class>/`` (or
            ``val/``); a folder without them is split by ``test_fraction``),
            ``"captions"`` (CSV/JSONL of image + caption, one sample per image with all its
            captions; its ``split`` column, a ``splits.csv`` beside it (``caption_splits``),
            or a ``test_fraction`` split; test = the ``test`` images, else ``val``/``dev``;
            both splits share one caption table), or ``"auto"``.
        path: file or folder of the data.
        train_transform / eval_transform: e.g. ``model.transform(train=True/False)``.
        download: let torchvision download CIFAR (needs internet).
        max_train_samples / max_test_samples: seeded random subsets (quick runs).
        caption_target, train_captions, held_out_captions, caption_splits: captioned data only,
            :class:`CaptionedImages`'s ``target``, ``train_captions``, ``held_out_captions`` and
            ``splits`` (its ``seed`` is ``seed``).
        query_split: captioned data with splits: the queries' split (``"test"``; ``"dev"`` to
            tune without reading the test images).

    Example::

        train, test = build_datasets("folder", "imagenet", model.transform(True), model.transform())
        provider = semantic_distance_for(train, kind="hierarchy")
    """
    path = os.path.expanduser(os.fspath(path))
    kind = infer_dataset_kind(path) if dataset == "auto" else dataset
    if kind in ("cifar10", "cifar100"):
        root = cache_dir() / "data" if path in ("cifar10", "cifar100") else path
        tr = TorchvisionCIFAR(root, kind, train=True, download=download)
        te = TorchvisionCIFAR(root, kind, train=False, download=download)
        train, test = SampleView(tr, range(len(tr))), SampleView(te, range(len(te)))
    elif kind == "npz":
        tr, te = NpzImages(path, "train"), NpzImages(path, "test")
        train, test = SampleView(tr, range(len(tr))), SampleView(te, range(len(te)))
    elif kind == "folder":
        splits = folder_splits(path)
        if splits is not None:
            train_dir, test_dir = splits
            tr, te = FolderImages(train_dir), FolderImages(test_dir)
            if tr.classes != te.classes:
                raise ValueError(
                    f"folder data set {path!r}: train and {test_dir!r} have different class folders"
                )
            train, test = SampleView(tr, range(len(tr))), SampleView(te, range(len(te)))
        else:
            nested = [e.path for e in os.scandir(path) if e.is_dir() and folder_splits(e.path)]
            if nested:  # one level too high: the split's folders would become one class
                raise ValueError(
                    f"folder data set {path!r} has no train/ and test/ (or val/) of its own, but "
                    f"{nested[0]!r} has: pass that folder as the data path"
                )
            base = FolderImages(path)
            tr_idx, te_idx = split_indices(len(base), test_fraction, seed)
            train, test = SampleView(base, tr_idx), SampleView(base, te_idx)
    elif kind == "captions":
        base = CaptionedImages(
            path,
            target=caption_target,
            seed=seed,
            train_captions=train_captions,
            held_out_captions=held_out_captions,
            splits=caption_splits,
        )
        splits = base.splits
        if any(s is not None for s in splits):
            # Queries are the "test" images; a file without them tests on "val"/"dev". Images of no
            # split (Flickr8k's 91 unlisted ones) are left out of both.
            if query_split not in ("test", "dev", "val"):
                raise ValueError(f"query_split must be 'test' or 'dev', got {query_split!r}")
            tr_idx = base.indices_of("train")
            te_idx = base.indices_of(query_split)
            if query_split == "test" and not te_idx:
                te_idx = base.indices_of("dev")
        else:
            tr_idx, te_idx = split_indices(len(base), test_fraction, seed)
        train, test = SampleView(base, tr_idx), SampleView(base, te_idx)
    else:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {DATASET_KINDS}")
    train.transform, test.transform = train_transform, eval_transform
    train = subsample(train, max_train_samples, seed)
    test = subsample(test, max_test_samples, seed + 1)
    if len(train) == 0 or len(test) == 0:
        raise ValueError(
            f"data set {path!r} gave {len(train)} train and {len(test)} test samples; need both > 0"
        )
    return train, test


def semantic_distance_for(
    dataset: ImageSamples,
    kind: str = "hierarchy",
    sentence_model: str | None = None,
    hierarchy_file: str | None = None,
):
    """The provider matching ``dataset``'s labels: :func:`~pml_shrewd.semantic_distances.build_semantic_distance`
    with the data set's ``classes`` (or its ``captions``, for captioned data).

    - ``"hierarchy"``: WordNet (Barz & Denzler's height-of-LCS distance) above the
      classes (wnids, synset names, CIFAR names, ``<name>.n.01``), or the tree of
      ``hierarchy_file`` with the classes matched to its nodes by name.
    - ``"label"``: ``LabelDistance`` (0 same label, 1 otherwise; the classic baseline).
    - ``"sentence"``: for captioned data ``dataset.semantic_distance()`` (a ``CaptionSetDistance``
      over each image's training captions, its ``target``: mean embedding or a caption drawn per
      epoch), else ``SentenceEmbeddingDistance`` over ``"a photo of a <class>"``.

    Example::

        provider = semantic_distance_for(train, kind="hierarchy")
        d = provider(torch.tensor([0, 1]), torch.tensor([2]))
    """
    if kind == "sentence" and getattr(dataset, "caption_sets", None) is not None:
        return dataset.semantic_distance(model=sentence_model)  # ids = image ids, the data set's target
    captions = getattr(dataset, "captions", None)
    return build_semantic_distance(
        kind,
        classes=None if captions is not None else list(dataset.classes),
        captions=captions,
        hierarchy_file=hierarchy_file,
        sentence_model=sentence_model,
    )
