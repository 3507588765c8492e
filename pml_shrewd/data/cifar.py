"""CIFAR-10 / CIFAR-100 through torchvision's data sets (downloads when online)."""

from __future__ import annotations

import os
from collections.abc import Callable

from PIL import Image

from .base import ImageSamples


class TorchvisionCIFAR(ImageSamples):
    """torchvision's ``CIFAR10``/``CIFAR100`` as :class:`ImageSamples`.

    Class names are torchvision's (alphabetical), which ``semantic_distance_for``
    maps to the WordNet hierarchy.

    Example::

        train = TorchvisionCIFAR("~/data", name="cifar100", train=True, download=True)
        train.classes[:3]        # ['apple', 'aquarium_fish', 'baby']
        image, label = train[0]
    """

    def __init__(
        self,
        root: str | os.PathLike,
        name: str = "cifar100",
        train: bool = True,
        transform: Callable | None = None,
        download: bool = False,
    ) -> None:
        from torchvision import datasets

        classes = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}
        if name not in classes:
            raise ValueError(f"TorchvisionCIFAR: name must be 'cifar10' or 'cifar100', got {name!r}")
        try:
            self.data = classes[name](os.path.expanduser(os.fspath(root)), train=train, download=download)
        except RuntimeError as err:
            raise FileNotFoundError(
                f"TorchvisionCIFAR: {name} not found under {os.fspath(root)!r}; pass download=True "
                f"(needs internet) or use the ImageFolder / npz layouts ({err})"
            ) from err
        self.name, self.transform = name, transform
        self.classes = list(self.data.classes)
        self.targets = [int(t) for t in self.data.targets]

    def load(self, index: int) -> Image.Image:
        return Image.fromarray(self.data.data[index])

    def sample_name(self, index: int) -> str:
        return f"{self.name}[{index}]"
