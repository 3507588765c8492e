"""Retrieval scored by held-out captions: graded HP@k / mAHP@k and nDCG@k without circularity.

When one sentence model defines both the training target and the relevance used in scoring,
a good score may only mean "the codes copied the sentence model". Here relevance between a
query image and a database image comes from captions the model never trained on (e.g.
captions 3-4 of each Flickr8k image when it trained on captions 0-2,
``CaptionedImages(..., train_captions=(0, 1, 2), held_out_captions=(3, 4)).held_out_sets``),
in two kinds (:func:`caption_relevance`):

- ``"sentence"``: ``(1 + cos) / 2`` of the L2-normalised mean sentence embedding of each
  image's held-out captions (:class:`~pml_shrewd.semantic_distances.CaptionSetDistance`);
- ``"words"``: model-free, the TF-IDF cosine of the content-word lemmas of the held-out
  captions (:class:`~pml_shrewd.semantic_distances.CaptionWordDistance`), so that a gain
  cannot be an artefact of the sentence model.

Both are providers over image ids, so the graded HP@k / mAHP@k are the library's own
:func:`~pml_shrewd.retrieval.hp_at_k` (the trapezoid definition of the hierarchy metrics,
``HP@k = sum of the top k's relevance / the best any k database items reach``) with the image
ids as labels. :func:`ndcg_at_k` ranks the same way (Hamming of ``code > 0.5``, or L1 / L2 of
continuous codes; ties by database index) and scores ``DCG@k = sum_i rel_i / log2(i + 1)``
over the ideal ordering of the database. Everything runs in chunks of queries: memory is
``O(chunk x database)``, at most ``O(queries x database)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .codes import binarize, check_code_range, to_numpy
from .metrics import _ahp, _check_k, _distances, _prepare_code_pair, _suffixed, bit_balance, hp_at_k

__all__ = [
    "CAPTION_RELEVANCES",
    "caption_relevance",
    "evaluate_caption_codes",
    "evaluate_caption_embeddings",
    "ndcg_at_k",
]

#: The relevance kinds of :func:`caption_relevance`.
CAPTION_RELEVANCES = ("sentence", "words")
_CHUNK_ENTRIES = 1 << 22


def caption_relevance(
    caption_sets: Sequence[Sequence[str] | str],
    kind: str = "sentence",
    *,
    model: Any = None,
    embeddings: Any = None,
    counts: Sequence[int] | None = None,
):
    """A provider over image ids whose ``1 - d`` is the relevance of two images' (held-out) captions.

    ``kind="sentence"``: ``CaptionSetDistance(caption_sets, target="mean", model=model)`` (or from
    precomputed caption ``embeddings`` + ``counts``), relevance ``(1 + cos) / 2`` of the mean
    embeddings. ``kind="words"``: ``CaptionWordDistance(caption_sets)``, relevance = TF-IDF cosine
    of the content-word lemmas (IDF over the images given: pass every image of the evaluation).

    Example::

        data = CaptionedImages("captions.csv", train_captions=(0, 1, 2), held_out_captions=(3, 4))
        relevance = {kind: caption_relevance(data.held_out_sets, kind) for kind in CAPTION_RELEVANCES}
    """
    from ..semantic_distances.caption_sets import CaptionSetDistance, CaptionWordDistance

    if kind not in CAPTION_RELEVANCES:
        raise ValueError(f"caption_relevance: kind must be one of {CAPTION_RELEVANCES}, got {kind!r}")
    if kind == "words":
        if embeddings is not None:
            raise ValueError("caption_relevance: the 'words' relevance is model-free; it takes no embeddings")
        return CaptionWordDistance(caption_sets)
    if embeddings is not None:
        return CaptionSetDistance(embeddings=embeddings, counts=counts, target="mean")
    return CaptionSetDistance(caption_sets, target="mean", model=model)


def _ids(ids: Any, n: int, name: str, provider: Any) -> np.ndarray:
    arr = to_numpy(ids, name)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must be a 1-D array of {n} image ids (one per code), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer image ids, got dtype {arr.dtype}")
    num = getattr(provider, "num_ids", None)
    if n and (arr.min() < 0 or (num is not None and arr.max() >= num)):
        raise IndexError(f"{name} must lie in [0, {num}) (the relevance provider's image ids)")
    return arr.astype(np.int64)


def _similarities(provider: Any, ids_a: np.ndarray, ids_b: np.ndarray) -> np.ndarray:
    d = to_numpy(provider(torch.as_tensor(ids_a), torch.as_tensor(ids_b)), "relevance").astype(np.float64)
    if d.shape != (len(ids_a), len(ids_b)) or not np.isfinite(d).all():
        raise ValueError("the relevance provider must return finite (A, B) distances")
    return 1.0 - np.clip(d, 0.0, 1.0)


def ndcg_at_k(
    query_codes: Any,
    db_codes: Any,
    query_ids: Any,
    db_ids: Any,
    *,
    relevance: Any,
    k: int = 100,
    distance: str = "hamming",
    ref_includes_query: bool = False,
    per_query: bool = False,
) -> float | np.ndarray:
    """Mean nDCG@k of ranking the database by code distance, graded by ``relevance``.

    ``rel(q, r) = 1 - relevance(query_ids[q], db_ids[r])`` (a provider over image ids, e.g.
    :func:`caption_relevance`); ``DCG@k = sum_{i<=k} rel_i / log2(i + 1)`` (linear gain), divided
    by the DCG of the ``k`` most relevant database items (0 when that is 0). Ranking as the other
    metrics: Hamming of ``code > 0.5`` (``distance="hamming"``) or L1 / L2 of the codes as they
    are, ties by database index; ``ref_includes_query``: query ``i`` is database item ``i`` and
    is left out of its ranking and of its ideal. ``k`` is clipped to the database size.

    Example::

        score = ndcg_at_k(test_z, train_z, test_ids, train_ids, relevance=caption_relevance(held_out), k=100)
    """
    k = _check_k(k)
    q, db = _prepare_code_pair(query_codes, db_codes, distance)
    nq, n = len(q), len(db)
    if nq == 0 or n - int(ref_includes_query) <= 0:
        raise ValueError("ndcg_at_k needs queries and a non-empty database")
    qi, di = _ids(query_ids, nq, "query_ids", relevance), _ids(db_ids, n, "db_ids", relevance)
    if ref_includes_query and (n < nq or not np.array_equal(qi, di[:nq])):
        raise ValueError("ref_includes_query=True needs the queries to be the first database items")
    k = min(int(k), n - int(ref_includes_query))
    discount = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    out = np.zeros(nq)
    step = max(1, _CHUNK_ENTRIES // n)
    db_t = None if distance == "hamming" else torch.from_numpy(db)
    for start in range(0, nq, step):
        stop = min(nq, start + step)
        d = _distances(q[start:stop], db, distance, db_t).astype(np.float64)
        sims = _similarities(relevance, qi[start:stop], di)
        if ref_includes_query:
            rows = np.arange(stop - start)
            d[rows, rows + start] = np.inf
            ideal_sims = sims.copy()
            ideal_sims[rows, rows + start] = -np.inf
        else:
            ideal_sims = sims
        top = np.argsort(d, axis=1, kind="stable")[:, :k]  # ties by database index
        dcg = (np.take_along_axis(sims, top, axis=1) * discount).sum(axis=1)
        best = -np.sort(-ideal_sims, axis=1)[:, :k]
        idcg = (best * discount).sum(axis=1)
        out[start:stop] = np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)
    return out if per_query else float(out.mean())


def _relevances(relevance: Any, held_out_captions: Any, sentence_model: Any) -> dict[str, Any]:
    if isinstance(relevance, Mapping):
        return dict(relevance)
    if isinstance(relevance, str):
        relevance = (relevance,)
    if isinstance(relevance, Sequence) and all(isinstance(r, str) for r in relevance):
        if held_out_captions is None:
            raise ValueError(
                "evaluate_caption_codes: relevance given by name needs held_out_captions= (one caption "
                "list per image id), or pass built providers, e.g. {'sentence': caption_relevance(...)}"
            )
        return {r: caption_relevance(held_out_captions, r, model=sentence_model) for r in relevance}
    if callable(relevance):
        return {"relevance": relevance}
    raise TypeError(
        "relevance must be 'sentence', 'words', a sequence of them, a provider or a mapping name -> provider"
    )


def evaluate_caption_codes(
    query_codes: Any,
    db_codes: Any,
    query_ids: Any,
    db_ids: Any,
    *,
    relevance: Any = CAPTION_RELEVANCES,
    held_out_captions: Sequence[Sequence[str]] | None = None,
    sentence_model: Any = None,
    k: int = 100,
    threshold: float = 0.5,
    continuous_distance: str = "l1",
    ref_includes_query: bool = False,
    return_curves: bool = False,
) -> dict[str, Any]:
    """Codes of captioned images scored by their held-out captions, binarised and continuous.

    ``query_ids`` / ``db_ids``: the image id of every code (ids of the relevance providers,
    e.g. ``CaptionedImages.targets`` of the test and train views). ``relevance``: names of
    :data:`CAPTION_RELEVANCES` (built from ``held_out_captions[id]`` with
    :func:`caption_relevance`; encoding them takes a while, so build once and pass
    ``{name: provider}`` when scoring often), a mapping ``name -> provider``, or one provider
    (named ``"relevance"``). The codes (in ``[0, 1]``) are ranked by Hamming of
    ``code > threshold`` and, as they are, by ``continuous_distance`` (``"l1"``), like
    :func:`~pml_shrewd.retrieval.evaluate_codes`.

    Fixed keys: ``"k"`` (the ``k`` used, clipped to the database), ``"relevances"`` (the names),
    ``"bit_balance"`` and ``"quantization_error"`` of the database codes, and for every
    relevance name ``r``: ``"mAHP@k [r]"``, ``"nDCG@k [r]"`` and the same with ``_continuous``
    (e.g. ``"mAHP@k_continuous [words]"``); ``return_curves=True`` adds ``"hp_curve [r]"`` and
    ``"hp_curve_continuous [r]"`` (lists of HP@1..k).

    Example::

        data = CaptionedImages("captions.csv", train_captions=(0, 1, 2), held_out_captions=(3, 4))
        m = evaluate_caption_codes(test_z, train_z, test.targets, train.targets,
                                   held_out_captions=data.held_out_sets, k=100)
        print(m["mAHP@k [sentence]"], m["mAHP@k [words]"], m["nDCG@k [sentence]"])
    """
    providers = _relevances(relevance, held_out_captions, sentence_model)
    if continuous_distance not in ("l1", "l2"):
        raise ValueError(f"continuous_distance must be 'l1' or 'l2', got {continuous_distance!r}")
    qz, dz = to_numpy(query_codes, "query_codes"), to_numpy(db_codes, "db_codes")
    check_code_range(qz, "query_codes")
    check_code_range(dz, "db_codes")
    qb, dbb = binarize(qz, threshold), binarize(dz, threshold)
    out: dict[str, Any] = {}
    for suffix, qc, dc, dist in (("", qb, dbb, "hamming"), ("_continuous", qz, dz, continuous_distance)):
        figures = _caption_ranking_figures(
            qc, dc, query_ids, db_ids, providers, k, dist, ref_includes_query, return_curves
        )
        out.update(
            {
                _suffixed(key, suffix): v
                for key, v in figures.items()
                if not (suffix and key in ("k", "relevances"))
            }
        )
    out["bit_balance"] = bit_balance(dbb)
    out["quantization_error"] = float(np.abs(dz.astype(np.float64) - dbb).mean()) if dz.size else math.nan
    return out


def evaluate_caption_embeddings(
    query_embeddings: Any,
    db_embeddings: Any,
    query_ids: Any,
    db_ids: Any,
    *,
    relevance: Any = CAPTION_RELEVANCES,
    held_out_captions: Sequence[Sequence[str]] | None = None,
    sentence_model: Any = None,
    k: int = 100,
    distance: str = "cosine",
    ref_includes_query: bool = False,
    return_curves: bool = False,
) -> dict[str, Any]:
    """:func:`evaluate_caption_codes`' binary keys (``"k"``, ``"relevances"``, ``"mAHP@k [r]"``,
    ``"nDCG@k [r]"``, curves) for real vectors that are no codes, ranked by ``distance``
    (``"cosine"`` by default): e.g. backbone features without hashing, or a random ranking.

    Example::

        m = evaluate_caption_embeddings(test_x, train_x, test.targets, train.targets,
                                        held_out_captions=data.held_out_sets)
    """
    providers = _relevances(relevance, held_out_captions, sentence_model)
    return _caption_ranking_figures(
        query_embeddings,
        db_embeddings,
        query_ids,
        db_ids,
        providers,
        k,
        distance,
        ref_includes_query,
        return_curves,
    )


def _caption_ranking_figures(
    qc: Any,
    dc: Any,
    query_ids: Any,
    db_ids: Any,
    providers: Mapping[str, Any],
    k: int,
    distance: str,
    ref_includes_query: bool,
    return_curves: bool,
) -> dict[str, Any]:
    """HP curve, mAHP@k and nDCG@k of one ranking for every relevance in ``providers``."""
    if not providers:
        raise ValueError("caption evaluation: no relevance to score with")
    n_eff = len(to_numpy(dc, "db_codes")) - int(ref_includes_query)
    if n_eff <= 0 or len(to_numpy(qc, "query_codes")) == 0:
        raise ValueError("caption evaluation needs queries and a non-empty database")
    k = min(_check_k(k), n_eff)
    out: dict[str, Any] = {"k": k, "relevances": list(providers)}
    for name, provider in providers.items():
        curve = hp_at_k(
            qc,
            dc,
            _ids(query_ids, len(qc), "query_ids", provider),
            _ids(db_ids, len(dc), "db_ids", provider),
            semantic_distance=provider,
            k=k,
            distance=distance,
            ref_includes_query=ref_includes_query,
        )
        # The trapezoid is linear: the area under the mean curve is the mean of the areas (mAHP@k).
        out[f"mAHP@k [{name}]"] = float(_ahp(curve[None, :])[0])
        out[f"nDCG@k [{name}]"] = ndcg_at_k(
            qc,
            dc,
            query_ids,
            db_ids,
            relevance=provider,
            k=k,
            distance=distance,
            ref_includes_query=ref_includes_query,
        )
        if return_curves:
            out[f"hp_curve [{name}]"] = curve.tolist()
    return out
