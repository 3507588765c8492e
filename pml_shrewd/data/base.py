"""Image data sets that return ``(image_tensor, label_id)`` and never crash on a bad file.

Unreadable images (missing, truncated, not an image) become a :class:`BadSample`
placeholder instead of an exception; :func:`collate_skipping` drops them from the
batch and reports their indices, so a long run counts them instead of dying.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate


@dataclass(frozen=True)
class BadSample:
    """Placeholder for an image that could not be read (``index`` in its data set)."""

    index: int
    reason: str


def load_rgb(path: str) -> Image.Image:
    """Open ``path`` as an RGB PIL image, forcing a full decode (so truncation raises here)."""
    with Image.open(path) as img:
        img.load()
        return img.convert("RGB")


class ImageSamples(Dataset):
    """Base class: subclasses implement :meth:`load` and set ``classes`` and ``targets``.

    ``dataset[i]`` is ``(transform(image), label)`` or ``(BadSample, label)``.
    ``classes`` names the label ids (for captioned data: the captions themselves,
    also available as ``captions``).

    Example::

        ds = NpzImages("cifar.npz", split="train", transform=model.transform(train=True))
        loader = DataLoader(ds, batch_size=64, collate_fn=collate_skipping)
        images, labels, bad = next(iter(loader))
    """

    classes: list[str]
    targets: list[int]
    transform: Callable | None = None

    def __len__(self) -> int:
        return len(self.targets)

    def load(self, index: int) -> Image.Image | BadSample:
        """The untransformed PIL image of sample ``index`` (or a :class:`BadSample`)."""
        raise NotImplementedError

    def sample_name(self, index: int) -> str:
        """A human-readable name of sample ``index`` (a path where there is one)."""
        return f"{type(self).__name__}[{index}]"

    @property
    def num_labels(self) -> int:
        """Number of label ids (classes or captions)."""
        return len(self.classes)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if index < 0 or index >= len(self):
            raise IndexError(f"{type(self).__name__}: index {index} out of range for {len(self)} samples")
        img = self.load(index)
        if isinstance(img, BadSample):
            return img, self.targets[index]
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[index]


class ImagePaths:
    """Mixin of data sets whose ``samples`` are image paths: :meth:`load` reads one, a bad file
    becomes a :class:`BadSample`; :meth:`sample_name` is the path. List it before :class:`ImageSamples`."""

    samples: list[str]

    def load(self, index: int) -> Image.Image | BadSample:
        try:
            return load_rgb(self.samples[index])
        except (OSError, ValueError, SyntaxError) as err:  # PIL raises these on corrupt files
            return BadSample(index, f"{type(err).__name__}: {err}")

    def sample_name(self, index: int) -> str:
        return self.samples[index]


class SampleView(ImageSamples):
    """A subset of another :class:`ImageSamples` with its own transform (train/test splits).

    Label ids stay those of ``base`` (so captions of all splits share one table).
    """

    def __init__(self, base: ImageSamples, indices: Sequence[int], transform: Callable | None = None) -> None:
        self.base = base
        self.indices = [int(i) for i in indices]
        if self.indices and (min(self.indices) < 0 or max(self.indices) >= len(base)):
            raise IndexError(f"SampleView: indices outside [0, {len(base)}) of {type(base).__name__}")
        self.transform = transform
        self.classes = base.classes
        self.targets = [base.targets[i] for i in self.indices]

    def __getattr__(self, name: str) -> Any:
        # Delegate data-set facts (captions, wnids, root, ...) to the base data set.
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def load(self, index: int) -> Image.Image | BadSample:
        img = self.base.load(self.indices[index])
        return BadSample(index, img.reason) if isinstance(img, BadSample) else img

    def sample_name(self, index: int) -> str:
        return self.base.sample_name(self.indices[index])


def split_indices(n: int, test_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """A seeded random train/test split of ``range(n)``."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    perm = np.random.RandomState(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return sorted(perm[n_test:].tolist()), sorted(perm[:n_test].tolist())


def collate_skipping(batch: list[tuple[Any, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Collate ``(image, label)`` pairs, dropping :class:`BadSample` entries.

    Returns ``(images, labels, bad_indices)``; ``bad_indices`` (int64) lists the
    data-set indices of the dropped samples so the caller can count and report them
    (it works across DataLoader worker processes, unlike a counter in the data set).
    """
    good = [(x, y) for x, y in batch if not isinstance(x, BadSample)]
    bad = torch.tensor([x.index for x, _ in batch if isinstance(x, BadSample)], dtype=torch.long)
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), bad
    images, labels = default_collate(good)
    return images, labels, bad


def subsample(dataset: ImageSamples, max_samples: int | None, seed: int) -> ImageSamples:
    """A seeded random subset of ``max_samples`` samples, in their original order (the one
    subsampling rule of the library: ``max_train_samples``, ``max_test_samples``, ``max_db_samples``)."""
    if max_samples is None or max_samples >= len(dataset):
        return dataset
    keep = np.sort(np.random.RandomState(seed).permutation(len(dataset))[:max_samples])
    if isinstance(dataset, SampleView):
        return SampleView(dataset.base, [dataset.indices[i] for i in keep], dataset.transform)
    return SampleView(dataset, keep.tolist(), getattr(dataset, "transform", None))


def database_subset(dataset: ImageSamples, max_samples: int | None, seed: int) -> ImageSamples:
    """The evaluation database: ``max_samples`` of ``dataset`` drawn with seed ``seed + 2``
    (train subsets use ``seed``, test subsets ``seed + 1``), as training and
    ``pml-shrewd evaluate --max-db`` both do."""
    return subsample(dataset, max_samples, seed + 2)


def validation_split(n: int, fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """``(rest, validation)`` positions of a training split of ``n``: the first ``int(n * fraction)``
    of a seeded permutation (``numpy.random.default_rng(seed)``) validate, the rest train. Tuning
    on it never reads the test split."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must lie in (0, 1), got {fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(n * fraction)
    return perm[n_val:].tolist(), perm[:n_val].tolist()


def read_class_names(path: str | os.PathLike) -> list[str]:
    """The class names of a text file, one per line (``#`` starts a comment; blank lines are skipped)."""
    with open(path) as f:
        names = [line.split("#", 1)[0].strip() for line in f]
    return [name for name in names if name]


def class_ids_of(names: Sequence[str], classes: Sequence[str], source: str = "class list") -> list[int]:
    """The ids (positions in ``classes``) of ``names``, sorted; a ``ValueError`` naming ``source``
    and every name that is not a class (or is listed twice)."""
    index = {str(c): i for i, c in enumerate(classes)}
    unknown = [n for n in names if n not in index]
    if unknown:
        raise ValueError(
            f"{source}: {len(unknown)} name(s) that are no class of the data set: {unknown} "
            f"(its {len(index)} classes are e.g. {list(index)[:5]})"
        )
    twice = sorted({n for n in names if list(names).count(n) > 1})
    if twice:
        raise ValueError(f"{source}: classes listed more than once: {twice}")
    if not names:
        raise ValueError(f"{source}: lists no class")
    return sorted(index[n] for n in names)


def holdout_split(
    targets: Sequence[int], classes: Sequence[str], names: Sequence[str], source: str = "hold-out classes"
) -> tuple[list[int], list[int]]:
    """``(kept, held_out)``: the positions of ``targets`` whose class is not in ``names``, and the
    held-out class ids (sorted). The unseen-class protocol: training sees only ``kept``; the
    database and the queries keep every class. Unknown names raise a ``ValueError`` naming ``source``.

    Example::

        names = read_class_names("recipes/configs/cifar100-frozen/holdout-classes.txt")
        kept, unseen = holdout_split(train.targets, train.classes, names)
        train = SampleView(train.base, [train.indices[i] for i in kept], train.transform)
    """
    held = class_ids_of(names, classes, source)
    drop = set(held)
    return [i for i, t in enumerate(targets) if int(t) not in drop], held


def read_class_groups(path: str | os.PathLike, classes: Sequence[str]) -> np.ndarray:
    """``groups[c]``: the group id of class ``c``, from a file of lines ``group class class ...``
    (e.g. CIFAR-100's 20 superclasses, five fine classes each; ``#`` comments). Every class must be
    in exactly one group; a ``ValueError`` names the file and the classes that are not."""
    group_of: dict[str, int] = {}
    group_ids: dict[str, int] = {}
    with open(path) as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if len(words) == 1:
                raise ValueError(f"{path}: group {words[0]!r} lists no class")
            for name in words[1:]:
                if name in group_of:
                    raise ValueError(f"{path}: class {name!r} is in more than one group")
                group_of[name] = group_ids.setdefault(words[0], len(group_ids))
    unknown = sorted(set(group_of) - {str(c) for c in classes})
    missing = [str(c) for c in classes if str(c) not in group_of]
    if unknown or missing:
        raise ValueError(
            f"{path}: every class must be in one group; names that are no class: {unknown}; "
            f"classes in no group: {missing}"
        )
    return np.array([group_of[str(c)] for c in classes], dtype=np.int64)
