"""Class-balanced batch orders: ``m`` images of each class in a batch, seeded per epoch."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np


def class_balanced_order(labels: Sequence[int], samples_per_class: int, length: int, seed) -> np.ndarray:
    """Indices into ``labels`` of ``length`` entries, in runs of ``samples_per_class`` same-label indices.

    Every batch whose size is a multiple of ``samples_per_class`` (taken from the start of
    the order) then holds ``batch_size / samples_per_class`` groups of same-class images:
    with many classes and small batches, a random batch holds few same-class pairs
    (128 random CIFAR-100 images: 1.3 same-class partners per image, 1% of its pairs), so
    L_sim learns mostly between-class distances and rarely sees distance 0.

    Each pass shuffles every class, cuts it into groups (a class's leftover images wait
    for a later pass) and shuffles the groups; passes repeat until ``length`` is filled.
    ``seed`` is anything ``numpy.random.RandomState`` takes, e.g. ``[seed, epoch]``, so
    the order is reproducible, which resuming relies on. PML's ``MPerClassSampler``
    builds batches the same way but draws from a module-global RNG, which would not.

    Example::

        order = class_balanced_order(train.targets, 4, len(train), seed=[0, epoch])
    """
    if not isinstance(samples_per_class, int) or samples_per_class < 1:
        raise ValueError(
            f"class_balanced_order: samples_per_class must be a positive int, got {samples_per_class!r}"
        )
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"class_balanced_order: labels must be 1-D, got shape {labels.shape}")
    rng = np.random.RandomState(seed)
    classes, counts = np.unique(labels, return_counts=True)
    small = classes[counts < samples_per_class]
    if len(small) == len(classes):
        raise ValueError(
            f"class_balanced_order: no class has samples_per_class={samples_per_class} samples "
            f"(largest class: {counts.max() if len(counts) else 0})"
        )
    if len(small):
        warnings.warn(
            f"class_balanced_order: {len(small)} classes have fewer than {samples_per_class} samples and are "
            f"never drawn (e.g. label {small[0]!r})",
            stacklevel=2,
        )
    members = [np.flatnonzero(labels == c) for c in classes[counts >= samples_per_class]]
    order: list[np.ndarray] = []
    filled = 0
    while filled < length:
        groups = []
        for idx in members:
            idx = rng.permutation(idx)
            usable = len(idx) // samples_per_class * samples_per_class
            groups.extend(idx[:usable].reshape(-1, samples_per_class))
        for g in rng.permutation(len(groups)):
            order.append(groups[g])
        filled += len(groups) * samples_per_class
    return np.concatenate(order)[:length]


class ShuffledEpochs:
    """A fresh permutation of ``range(n)`` per epoch: epoch ``e`` gets the ``e``-th ``torch.randperm``
    of one generator seeded with ``seed``.

    The order of an epoch depends on ``(seed, epoch)`` only, so a resumed run sees the same
    batches (the generator is replayed up to ``epoch``; a permutation of 50,000 takes about 1 ms).

    Example::

        order = ShuffledEpochs(len(train), seed=0)(epoch)   # int64 array of length n
    """

    def __init__(self, n: int, seed: int = 0) -> None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"ShuffledEpochs: n must be a positive int, got {n!r}")
        self.n, self.seed = n, int(seed)
        self._generator, self._next_epoch = None, 0

    def __call__(self, epoch: int) -> np.ndarray:
        import torch

        if epoch < 0:
            raise ValueError(f"ShuffledEpochs: epoch must be >= 0, got {epoch}")
        if self._generator is None or epoch < self._next_epoch:
            self._generator, self._next_epoch = torch.Generator().manual_seed(self.seed), 0
        while self._next_epoch < epoch:  # replay the epochs before this one
            torch.randperm(self.n, generator=self._generator)
            self._next_epoch += 1
        self._next_epoch += 1
        return torch.randperm(self.n, generator=self._generator).numpy()


class ClassBalancedEpochs:
    """Per-epoch :func:`class_balanced_order` of ``labels`` (``samples_per_class`` per class and batch),
    seeded by ``[seed, epoch]``."""

    def __init__(self, labels: Sequence[int], samples_per_class: int, seed: int = 0) -> None:
        self.labels, self.samples_per_class, self.seed = np.asarray(labels), samples_per_class, int(seed)
        class_balanced_order(self.labels, samples_per_class, 1, seed=[self.seed, 0])  # validate now

    def __call__(self, epoch: int) -> np.ndarray:
        return class_balanced_order(
            self.labels, self.samples_per_class, len(self.labels), seed=[self.seed, epoch]
        )
