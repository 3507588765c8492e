"""ImageFolder layouts: ``root/<class>/*.jpg`` with class names or WordNet ids."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from torchvision.datasets import ImageFolder

from .base import ImagePaths, ImageSamples

_WNID = re.compile(r"^n\d{8}$")


class FolderImages(ImagePaths, ImageSamples):
    """An ImageFolder (torchvision's scan) whose unreadable files are skipped, not fatal.

    Folder names are the classes: plain names (``cat``, ``dog``: CIFAR's JPEG
    layout, mapped to WordNet noun synsets for the hierarchy) or WordNet ids
    (``n02084071``: ImageNet; then ``wnids`` is set).

    Example::

        train = FolderImages("imagenet/train", transform=model.transform(train=True))
        train.wnids[:2]          # ['n01440764', 'n01443537'] for ImageNet
        image, label = train[0]
    """

    def __init__(self, root: str | os.PathLike, transform: Callable | None = None) -> None:
        if not os.path.isdir(root):
            raise FileNotFoundError(f"FolderImages: no such directory {os.fspath(root)!r}")
        # torchvision does the scanning (class folders, image extensions).
        scan = ImageFolder(os.fspath(root), allow_empty=True)
        self.root, self.transform = os.fspath(root), transform
        self.classes = list(scan.classes)
        self.samples = [path for path, _ in scan.samples]
        self.targets = [label for _, label in scan.samples]
        if not self.samples:
            raise ValueError(f"FolderImages: no images under {self.root!r}")
        self.wnids = list(self.classes) if all(_WNID.match(c) for c in self.classes) else None


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class ImageFiles(ImagePaths, ImageSamples):
    """A plain list of image files (no labels: every label is 0), e.g. a folder of photos to index.

    Example::

        photos = ImageFiles.from_folder("~/Pictures", transform=model.transform())
        image, _ = photos[0]
    """

    def __init__(self, paths: list[str], transform: Callable | None = None) -> None:
        if not paths:
            raise ValueError("ImageFiles: no image paths given")
        self.samples = [os.fspath(p) for p in paths]
        self.targets = [0] * len(self.samples)
        self.classes = ["unlabelled"]
        self.transform = transform

    @classmethod
    def from_folder(cls, root: str | os.PathLike, transform: Callable | None = None) -> ImageFiles:
        """All images under ``root`` (recursively, sorted)."""
        root = os.path.expanduser(os.fspath(root))
        if not os.path.isdir(root):
            raise FileNotFoundError(f"ImageFiles: no such directory {root!r}")
        paths = sorted(
            os.path.join(d, f)
            for d, _, files in os.walk(root)
            for f in files
            if f.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not paths:
            raise ValueError(f"ImageFiles: no images under {root!r}")
        return cls(paths, transform)
