"""pml-shrewd's cache folder (standard library only, so torch-free modules can use it)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """Root of pml-shrewd's cache: ``$PML_SHREWD_CACHE`` or ``~/.cache/pml_shrewd``.

    Everything the library caches lives below it: the offline WordNet layout
    (``nltk_data/``), converted backbone weights and torchvision's CIFAR download
    (``data/``). Read at each call, so changing the variable takes effect at once.

    Example::

        weights = cache_dir() / "tf_efficientnet_lite0.timm.pth"
    """
    return Path(os.environ.get("PML_SHREWD_CACHE") or Path.home() / ".cache" / "pml_shrewd").expanduser()
