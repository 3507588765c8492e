"""Data sets returning ``(image, label_id)`` and the factory that pairs them with providers."""

from .base import (
    BadSample,
    ImageSamples,
    SampleView,
    collate_skipping,
    database_subset,
    load_rgb,
    split_indices,
    subsample,
)
from .captions import CaptionedImages
from .cifar import TorchvisionCIFAR
from .factory import (
    CIFAR10_CLASSES,
    DATASET_KINDS,
    build_dataset,
    build_datasets,
    folder_splits,
    infer_dataset_kind,
    semantic_distance_for,
)
from .features import FeatureSamples
from .folder import FolderImages, ImageFiles
from .npz import NpzImages
from .sampling import ClassBalancedEpochs, ShuffledEpochs, class_balanced_order

__all__ = [
    "BadSample",
    "ImageSamples",
    "SampleView",
    "collate_skipping",
    "load_rgb",
    "split_indices",
    "CaptionedImages",
    "TorchvisionCIFAR",
    "FolderImages",
    "ImageFiles",
    "NpzImages",
    "class_balanced_order",
    "ClassBalancedEpochs",
    "ShuffledEpochs",
    "FeatureSamples",
    "database_subset",
    "subsample",
    "CIFAR10_CLASSES",
    "DATASET_KINDS",
    "build_dataset",
    "build_datasets",
    "folder_splits",
    "infer_dataset_kind",
    "semantic_distance_for",
]
