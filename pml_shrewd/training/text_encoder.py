"""Train a :class:`~pml_shrewd.models.TextHashEncoder` into a trained image model's Hamming space."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..models.text_encoder import TextHashEncoder


def train_text_encoder(
    image_codes: Any,
    image_targets: Any,
    caption_embeddings: Any,
    caption_images: Any,
    *,
    sentence_model: str | None = None,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    lambda_kl: float = 0.001,
    gamma: float = 0.1,
    rho: float = 0.0,
    hidden_dim: int | None = 512,
    seed: int = 0,
    progress: bool = True,
) -> TextHashEncoder:
    """Fit a text encoder whose caption codes land near the codes of semantically close images.

    SHREWD's objective on mixed text-image pairs (:class:`~pml_shrewd.losses.SemanticDistanceLoss`
    with ``ref_emb``): each step draws ``batch_size`` training captions and as many images (the
    captions' own images and random others); the Manhattan distance between a caption's
    continuous code and an image's fixed binary code is trained to follow the caption-to-image
    distance ``(1 - cos) / 2`` of the caption's sentence embedding and the image's target
    embedding (the normalised mean of its training captions' embeddings), plus ``lambda_kl``
    L_KL on the caption codes. The image model is not changed.

    Args:
        image_codes: ``(N, K)`` binary (or ``[0, 1]``) codes of the training images, as indexed.
        image_targets: ``(N, D)`` the images' target embeddings (unit rows).
        caption_embeddings: ``(M, D)`` unit sentence embeddings of the training captions.
        caption_images: ``(M,)`` the image (row of ``image_codes``) of each caption.
        sentence_model: stored with the encoder, so that :meth:`TextHashEncoder.encode` embeds
            query text with the model the targets came from.

    Example::

        encoder = train_text_encoder(train_codes, provider.mean_embeddings, caption_emb, owner)
        encoder.save_pretrained("runs/flickr8k/text_encoder")
    """
    from tqdm.auto import tqdm

    from ..losses import build_objective
    from ..semantic_distances import SentenceEmbeddingDistance

    codes = torch.as_tensor(np.asarray(image_codes), dtype=torch.float32)
    targets = torch.as_tensor(np.asarray(image_targets), dtype=torch.float32)
    texts = torch.as_tensor(np.asarray(caption_embeddings), dtype=torch.float32)
    owner = torch.as_tensor(np.asarray(caption_images), dtype=torch.int64)
    n, m = len(codes), len(texts)
    if codes.dim() != 2 or targets.shape[0] != n or texts.dim() != 2 or owner.shape != (m,):
        raise ValueError(
            "train_text_encoder: image_codes (N, K), image_targets (N, D), caption_embeddings (M, D) "
            f"and caption_images (M,) must agree; got {tuple(codes.shape)}, {tuple(targets.shape)}, "
            f"{tuple(texts.shape)}, {tuple(owner.shape)}"
        )
    if targets.shape[1] != texts.shape[1]:
        raise ValueError(
            f"train_text_encoder: image targets are {targets.shape[1]}-d but captions {texts.shape[1]}-d"
        )
    if m == 0 or owner.min() < 0 or owner.max() >= n:
        raise ValueError(f"train_text_encoder: caption_images must index the {n} images")
    if codes.min() < 0 or codes.max() > 1:
        raise ValueError("train_text_encoder: image_codes must lie in [0, 1] (binary codes as indexed)")
    codes = (codes > 0.5).float()  # what the index holds
    # One table of ids: captions 0..M-1, images M..M+N-1.
    provider = SentenceEmbeddingDistance(embeddings=torch.cat([texts, targets]))
    loss_fn = build_objective(
        "shrewd", provider, embedding_size=codes.shape[1], lambda_kl=lambda_kl, gamma=gamma, rho=rho
    )
    torch.manual_seed(seed)
    encoder = TextHashEncoder(texts.shape[1], codes.shape[1], sentence_model, hidden_dim=hidden_dim)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))
    rng = torch.Generator().manual_seed(seed)
    half = max(1, batch_size // 2)
    encoder.train()
    bar = tqdm(range(steps), desc="text encoder", disable=not progress, leave=False)
    for _ in bar:
        caps = torch.randint(0, m, (batch_size,), generator=rng)
        images = torch.cat([owner[caps[:half]], torch.randint(0, n, (batch_size - half,), generator=rng)])
        loss = loss_fn(encoder(texts[caps]), caps, ref_emb=codes[images], ref_labels=m + images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    return encoder.eval()


def text_to_image_figures(
    query_codes: Any,
    query_images: Any,
    image_codes: Any,
    *,
    ks: tuple[int, ...] = (1, 5, 10),
    relevance: Any = None,
    image_ids: Any = None,
    k: int = 100,
) -> dict[str, float]:
    """Text-to-image retrieval by Hamming ranking: ``R@k`` = share of text queries whose own image
    (``query_images[q]``, a row of ``image_codes``) is among the first ``k`` (ties by index, the
    index's order), and, given ``relevance`` (a provider over ``image_ids``), the graded mAHP@k
    with the query's own image id as its label.

    Example::

        figures = text_to_image_figures(text_codes, owner, test_codes, relevance=held_out, image_ids=ids)
        figures["R@10"], figures["mAHP@k"]
    """
    from ..retrieval import mahp_at_k
    from ..retrieval.codes import binarize, to_numpy
    from ..retrieval.metrics import _distances, _prepare_codes

    q = _prepare_codes(query_codes, "query_codes", "hamming")
    db = _prepare_codes(image_codes, "image_codes", "hamming")
    own = to_numpy(query_images, "query_images").astype(np.int64)
    if own.shape != (len(q),) or own.min(initial=0) < 0 or own.max(initial=0) >= len(db):
        raise ValueError("text_to_image_figures: query_images must give a row of image_codes per query")
    d = _distances(q, db, "hamming", None).astype(np.int64)
    mine = d[np.arange(len(q)), own]
    # Rank of the own image: the images strictly closer, and the tied ones before it in index order.
    rank = (d < mine[:, None]).sum(1) + ((d == mine[:, None]) & (np.arange(len(db)) < own[:, None])).sum(1)
    out = {f"R@{kk}": float((rank < kk).mean()) for kk in ks}
    out["median rank"] = float(np.median(rank + 1))
    if relevance is not None:
        ids = np.arange(len(db)) if image_ids is None else to_numpy(image_ids, "image_ids").astype(np.int64)
        out["mAHP@k"] = mahp_at_k(
            binarize(to_numpy(query_codes)), binarize(to_numpy(image_codes)), ids[own], ids,
            semantic_distance=relevance, k=min(k, len(db)),
        )  # fmt: skip
        out["k"] = min(k, len(db))
    return out


def caption_training_pairs(caption_sets: Any, image_ids: Any, sentence_model: str | None = None):
    """``(image_targets, caption_embeddings, caption_images)`` of :func:`train_text_encoder` for the
    images ``image_ids`` (rows of ``caption_sets``, e.g. ``CaptionedImages.caption_sets``): each
    image's target is the normalised mean embedding of its captions, and every caption of those
    images is one training text (``caption_images``: its image's position in ``image_ids``)."""
    from ..semantic_distances import CaptionSetDistance

    provider = CaptionSetDistance(caption_sets, model=sentence_model)
    ids = np.asarray(image_ids, dtype=np.int64)
    rows = [np.arange(provider.offsets[i], provider.offsets[i + 1]) for i in ids]
    owner = np.concatenate([np.full(len(r), pos) for pos, r in enumerate(rows)])
    return provider.mean_embeddings[ids], provider.caption_embeddings[np.concatenate(rows)], owner
