"""Distances between images that each have several captions (Flickr8k, COCO): per-image targets.

Id ``i`` stands for image ``i`` and its caption set ``caption_sets[i]``.

- :class:`CaptionSetDistance`: sentence embeddings. ``target="mean"`` compares the
  L2-normalised mean of each image's caption embeddings; ``target="random"`` compares one
  caption per image, drawn afresh each epoch by :func:`draw_captions` from
  ``(seed, epoch, image id)`` (call :meth:`~CaptionSetDistance.set_epoch`, or pass the provider
  as a trainer callback: its ``on_step_start`` follows ``trainer.epoch``).
- :class:`CaptionWordDistance`: model-free, ``1 -`` the TF-IDF cosine of the content-word
  lemmas (WordNet lemmatiser) of each image's captions.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .base import SemanticDistance
from .sentence import SentenceEmbeddingDistance, UnitEmbeddingDistance, encode_sentences

__all__ = [
    "CAPTION_TARGETS",
    "CaptionSetDistance",
    "CaptionWordDistance",
    "content_lemmas",
    "draw_captions",
]

#: How :class:`CaptionSetDistance` turns an image's captions into its target.
CAPTION_TARGETS = ("mean", "random")
_METRICS = ("cosine", "angular")
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele et al. 2014), vectorised over ``uint64`` (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _M64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
        return x ^ (x >> np.uint64(31))


def draw_captions(
    counts: Sequence[int] | np.ndarray, seed: int, epoch: int, ids: Sequence[int] | None = None
) -> np.ndarray:
    """One caption position per image for ``epoch``: ``hash(seed, epoch, id) mod counts[id]``.

    A counter-based draw (SplitMix64 of ``seed``, then of ``epoch``, then of the image id),
    so the caption of image ``i`` in epoch ``e`` depends on ``(seed, e, i)`` only: a resumed
    run, a subset of the images, or another process draws the same captions.

    Args:
        counts: the number of captions of every image (all >= 1).
        seed, epoch: non-negative ints.
        ids: the images to draw for (default: all).

    Example::

        pos = draw_captions([5, 5, 3], seed=0, epoch=2)   # e.g. array([4, 0, 2])
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 1 or (counts < 1).any():
        raise ValueError("draw_captions: counts must be a 1-D array of positive caption counts")
    ids_arr = np.arange(len(counts), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    for name, v in (("seed", seed), ("epoch", epoch)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"draw_captions: {name} must be a non-negative int, got {v!r}")
    h = _splitmix64(np.array([seed], dtype=np.uint64))
    h = _splitmix64(h ^ np.uint64(epoch))
    h = _splitmix64(h ^ ids_arr.astype(np.uint64))
    return (h % counts[ids_arr].astype(np.uint64)).astype(np.int64)


def _check_caption_sets(caption_sets: Any, name: str) -> list[tuple[str, ...]]:
    if isinstance(caption_sets, str):
        raise TypeError(f"{name}: caption_sets must be a list of caption lists (one per image), not a string")
    sets = []
    for i, captions in enumerate(caption_sets):
        if isinstance(captions, str):
            captions = (captions,)
        captions = tuple(captions)
        if not captions:
            raise ValueError(f"{name}: image {i} has no caption")
        for c in captions:
            if not isinstance(c, str) or not c.strip():
                raise ValueError(f"{name}: image {i} has an empty or non-text caption {c!r}")
        sets.append(captions)
    if not sets:
        raise ValueError(f"{name}: caption_sets is empty")
    return sets


class CaptionSetDistance(UnitEmbeddingDistance):
    """Sentence-embedding distances between images, each with a set of captions.

    Every caption is encoded once (L2-normalised). The embedding of image ``i`` is

    - ``target="mean"`` (default): the L2-normalised mean of its captions' embeddings;
    - ``target="random"``: the embedding of caption ``draw_captions(counts, seed, epoch)[i]``,
      which changes with :meth:`set_epoch` (epoch 0 until then).

    With ``c`` the cosine of two images' embeddings, ``d = (1 - c) / 2`` (``metric="cosine"``)
    or ``arccos(c) / pi`` (``"angular"``), 0 for equal ids, as :class:`SentenceEmbeddingDistance`.
    So ``1 - d = (1 + c) / 2`` is the graded relevance the caption evaluation uses.

    Args:
        caption_sets: ``caption_sets[i]`` the captions of image ``i`` (a string counts as one).
        embeddings / counts: instead of captions, the caption embeddings ``(M, dim)``, image by
            image in order, and the number of captions of each image (``sum(counts) == M``).
        target, seed: as above.
        model: sentence-transformers name / path / loaded model (or anything with ``encode``);
            default :func:`default_sentence_model`.
        metric, batch_size, device, show_progress_bar: as :class:`SentenceEmbeddingDistance`.

    Example::

        provider = CaptionSetDistance([["a dog runs", "a puppy on grass"], ["a bridge at night"]])
        d = provider(torch.tensor([0, 1]))            # from the mean embedding of each image
        drawn = CaptionSetDistance(sets, target="random", seed=0)
        drawn.set_epoch(3)                             # one caption per image, drawn for epoch 3
    """

    def __init__(
        self,
        caption_sets: Sequence[Sequence[str] | str] | None = None,
        *,
        embeddings: torch.Tensor | np.ndarray | None = None,
        counts: Sequence[int] | None = None,
        target: str = "mean",
        seed: int = 0,
        model: Any = None,
        metric: str = "cosine",
        batch_size: int = 64,
        device: str | torch.device | None = None,
        show_progress_bar: bool | None = None,
    ) -> None:
        if target not in CAPTION_TARGETS:
            raise ValueError(f"CaptionSetDistance: target must be one of {CAPTION_TARGETS}, got {target!r}")
        if metric not in _METRICS:
            raise ValueError(f"CaptionSetDistance: unknown metric {metric!r}, use one of {_METRICS}")
        if (caption_sets is None) == (embeddings is None):
            raise ValueError(
                "CaptionSetDistance needs exactly one of caption_sets= or embeddings= (+ counts=)"
            )
        self.caption_sets: list[tuple[str, ...]] | None = None
        if caption_sets is not None:
            self.caption_sets = _check_caption_sets(caption_sets, "CaptionSetDistance")
            counts = [len(s) for s in self.caption_sets]
            flat = [c for s in self.caption_sets for c in s]
            embeddings = encode_sentences(
                flat, model, batch_size=batch_size, device=device, show_progress_bar=show_progress_bar
            )
        elif counts is None:
            raise ValueError("CaptionSetDistance: embeddings= needs counts= (captions per image)")
        emb = SentenceEmbeddingDistance._check_embeddings(embeddings)
        self.counts = np.asarray(counts, dtype=np.int64)
        if self.counts.ndim != 1 or len(self.counts) == 0 or (self.counts < 1).any():
            raise ValueError("CaptionSetDistance: counts must list at least one caption for every image")
        if int(self.counts.sum()) != emb.shape[0]:
            raise ValueError(
                f"CaptionSetDistance: counts add up to {int(self.counts.sum())} captions "
                f"but there are {emb.shape[0]} embeddings"
            )
        self.caption_embeddings = emb / emb.norm(dim=1, keepdim=True)
        self.offsets = np.concatenate(([0], np.cumsum(self.counts)))
        owner = torch.as_tensor(np.repeat(np.arange(len(self.counts)), self.counts))
        mean = torch.zeros(len(self.counts), emb.shape[1]).index_add_(0, owner, self.caption_embeddings)
        norm = mean.norm(dim=1, keepdim=True)
        if (norm == 0).any():
            raise ValueError(
                f"CaptionSetDistance: the captions of image {int((norm[:, 0] == 0).nonzero()[0])} "
                "have a zero mean embedding"
            )
        self.mean_embeddings = mean / norm
        self.target, self.seed, self.metric = target, int(seed), metric
        self.num_ids = len(self.counts)
        self.epoch = 0
        self._set_table()

    def _set_table(self) -> None:
        if self.target == "mean":
            self.embeddings = self.mean_embeddings
        else:
            rows = self.offsets[:-1] + draw_captions(self.counts, self.seed, self.epoch)
            self.embeddings = self.caption_embeddings[torch.as_tensor(rows)]
        self._per_device: dict[torch.device, torch.Tensor] = {}

    def choice(self, epoch: int | None = None) -> np.ndarray:
        """The caption position drawn for every image in ``epoch`` (default: the current one)."""
        return draw_captions(self.counts, self.seed, self.epoch if epoch is None else epoch)

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s captions (``target="random"``; a no-op for ``"mean"``)."""
        if epoch != self.epoch:
            self.epoch = int(epoch)
            if self.target == "random":
                self._set_table()

    def on_step_start(self, trainer: Any) -> None:
        """Trainer callback: follow ``trainer.epoch`` (the epoch being trained)."""
        self.set_epoch(int(trainer.epoch))

    def cluster_labels(self, num_clusters: int, seed: int = 0, ids: Any = None) -> np.ndarray:
        """Pseudo-classes: spherical k-means (faiss) of the images' mean caption embeddings, one
        cluster id per image id, for label-based losses on captioned data (what a PML user
        without classes would do). ``ids``: fit the centroids on these images only (e.g. the
        training split), then assign every image to its nearest centroid.

        Example::

            labels = provider.cluster_labels(100, seed=0, ids=train.targets)   # (num_ids,) ints
        """
        import faiss

        x = self.mean_embeddings.numpy().astype(np.float32)
        fit = x if ids is None else x[np.asarray(ids, dtype=np.int64)]
        if not 1 < int(num_clusters) <= len(fit):
            raise ValueError(
                f"cluster_labels: num_clusters must lie in [2, {len(fit)}] (the images fitted), got {num_clusters}"
            )
        kmeans = faiss.Kmeans(
            x.shape[1], int(num_clusters), niter=25, seed=int(seed), spherical=True, verbose=False,
            min_points_per_centroid=1, max_points_per_centroid=len(fit),
        )  # fmt: skip
        kmeans.train(np.ascontiguousarray(fit))
        _, assign = kmeans.index.search(x, 1)
        return assign[:, 0].astype(np.int64)

    def as_mean(self) -> CaptionSetDistance:
        """The same images with ``target="mean"`` (shares the embeddings; e.g. for evaluation)."""
        other = object.__new__(CaptionSetDistance)
        other.__dict__.update(self.__dict__)
        other.target = "mean"
        other._set_table()
        return other

    def __repr__(self) -> str:
        return (
            f"CaptionSetDistance(num_ids={self.num_ids}, captions={int(self.counts.sum())}, "
            f"target={self.target!r}, metric={self.metric!r})"
        )


# ----------------------------------------------------------------------------- model-free


_TOKEN = re.compile(r"[a-z]+")


@functools.lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


@functools.lru_cache(maxsize=200_000)
def _lemma(word: str) -> str:
    from .wordnet import load_wordnet

    wn = load_wordnet()
    noun = wn.morphy(word, "n")
    if noun is not None and noun != word:
        return noun  # dogs -> dog, leaves -> leaf, children -> child
    verb = wn.morphy(word, "v")
    if verb is not None:
        return verb  # running -> run, sat -> sit
    return noun or word


def content_lemmas(text: str) -> list[str]:
    """The content words of ``text`` as WordNet lemmas: lower-cased ``[a-z]+`` tokens, without
    scikit-learn's English stop words and one-letter tokens, each mapped by nltk's WordNet
    ``morphy`` (a changed noun lemma first, else the verb lemma, else the word).

    Example::

        content_lemmas("Two dogs are running on the leaves")   # ['dog', 'run', 'leaf']
    """
    stop = _stop_words()
    return [_lemma(w) for w in _TOKEN.findall(text.lower()) if len(w) > 1 and w not in stop]


class CaptionWordDistance(SemanticDistance):
    """Model-free distances between caption sets: ``d = 1 - cos(tfidf_i, tfidf_j)``.

    Each image is one document, the :func:`content_lemmas` of all its captions; the documents
    are weighted by scikit-learn's TF-IDF (raw counts times smoothed idf
    ``ln((1 + n) / (1 + df)) + 1`` over the ``n`` images given, rows L2-normalised). The cosine of
    two such non-negative rows lies in ``[0, 1]``, so ``1 - d`` is a graded relevance that shares
    no parameter with any sentence model: images whose captions name the same things (``dog``,
    ``beach``, ``run``) are similar, rare words count more than common ones. Equal ids have
    distance 0; an image whose captions hold no content word has similarity 0 to every other.

    Example::

        provider = CaptionWordDistance([["a dog runs on the beach"], ["dogs running"], ["a red bus"]])
        1 - provider(torch.tensor([0]), torch.tensor([1, 2]))   # dog/run shared: > 0; bus: 0
    """

    check_output = False  # in [0, 1] by construction

    def __init__(self, caption_sets: Sequence[Sequence[str] | str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.caption_sets = _check_caption_sets(caption_sets, "CaptionWordDistance")
        self.lemmas = [[w for c in s for w in content_lemmas(c)] for s in self.caption_sets]
        self.num_ids = len(self.lemmas)
        if not any(self.lemmas):
            raise ValueError("CaptionWordDistance: no caption holds a content word")
        vec = TfidfVectorizer(analyzer=lambda doc: doc, lowercase=False, norm="l2", smooth_idf=True)
        self.vectors = vec.fit_transform(self.lemmas).tocsr().astype(np.float64)
        self.vocabulary = vec.vocabulary_

    def pairwise(self, ids_a: torch.Tensor, ids_b: torch.Tensor) -> torch.Tensor:
        a, b = ids_a.cpu().numpy(), ids_b.cpu().numpy()
        cos = np.asarray((self.vectors[a] @ self.vectors[b].T).todense(), dtype=np.float64)
        d = torch.as_tensor(1.0 - np.clip(cos, 0.0, 1.0), dtype=torch.float32)
        d = d.masked_fill_(torch.as_tensor(a[:, None] == b[None, :]), 0.0)
        return d.clamp_(0.0, 1.0).to(ids_a.device)

    def __repr__(self) -> str:
        return f"CaptionWordDistance(num_ids={self.num_ids}, vocabulary={len(self.vocabulary)})"
