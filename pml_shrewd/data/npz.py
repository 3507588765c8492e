"""Images stored as uint8 arrays in one ``.npz`` file (a CIFAR-like layout)."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from PIL import Image

from .base import ImageSamples


class NpzImages(ImageSamples):
    """A split of an ``.npz`` file holding ``x_train``, ``y_train``, ``x_test``, ``y_test``.

    ``x_*`` are uint8 arrays of shape ``(N, H, W, 3)``, ``y_*`` integer labels in
    ``range(C)``; an optional ``classes`` array names the C classes (CIFAR class
    names map to WordNet for the hierarchy, see ``semantic_distance_for``).

    Example::

        np.savez("tiny.npz", x_train=xt, y_train=yt, x_test=xs, y_test=ys, classes=names)
        train = NpzImages("tiny.npz", split="train", transform=model.transform(train=True))
        image, label = train[0]
    """

    def __init__(
        self, path: str | os.PathLike, split: str = "train", transform: Callable | None = None
    ) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"NpzImages: split must be 'train' or 'test', got {split!r}")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"NpzImages: no such file {os.fspath(path)!r}")
        with np.load(path, allow_pickle=False) as data:
            for key in (f"x_{split}", f"y_{split}"):
                if key not in data:
                    raise KeyError(
                        f"NpzImages: {os.fspath(path)!r} has no array {key!r} (keys: {list(data)})"
                    )
            x, y = data[f"x_{split}"], data[f"y_{split}"]
            classes = [str(c) for c in data["classes"]] if "classes" in data else None
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"NpzImages: x_{split} must be uint8 (N, H, W, 3), got {x.dtype} {x.shape}")
        y = np.asarray(y).reshape(-1)
        if len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"NpzImages: y_{split} must be {len(x)} integer labels, got {y.dtype} {y.shape}")
        num_classes = len(classes) if classes is not None else int(y.max()) + 1 if len(y) else 0
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"NpzImages: labels of {split} outside [0, {num_classes})")
        self.path, self.split, self.transform = os.fspath(path), split, transform
        self.images = x
        self.targets = y.astype(np.int64).tolist()
        self.classes = classes if classes is not None else [str(i) for i in range(num_classes)]

    def load(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index])

    def sample_name(self, index: int) -> str:
        return f"{self.path}:{self.split}[{index}]"
