"""Text-to-image retrieval on a caption benchmark's saved codes: the text encoder against the
nearest-caption route, on the same image codes."""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def text_to_image_rows(
    codes_file: str | os.PathLike,
    data: Any,
    *,
    sentence_model: str | None = None,
    steps: int = 2000,
    seed: int = 0,
    k: int = 100,
    save_to: str | os.PathLike | None = None,
    fit_on_queries: bool = False,
) -> dict[str, dict[str, float]]:
    """Held-out captions of the test images query the test images' codes (a row's npz).

    - ``"text encoder"``: :func:`~pml_shrewd.training.train_text_encoder` on the training captions
      of the training images against their saved binary codes; the query caption's code ranks
      the test images by Hamming distance.
    - ``"nearest caption"``: what ``search --caption`` does without a text encoder: the query
      becomes the test image whose indexed caption (its first training caption, as
      ``pml-shrewd index`` keeps) is nearest by sentence-embedding cosine, and that image's code
      ranks the test images.

    Figures: :func:`~pml_shrewd.training.text_to_image_figures` (R@1/5/10 of the caption's own
    image, median rank, mAHP@k by the held-out sentence relevance of the query's image).
    ``data``: the :class:`~pml_shrewd.data.CaptionedImages` the codes' labels (image ids) index,
    with ``held_out_sets``. ``save_to``: also save the text encoder there. ``fit_on_queries``: add
    ``"text encoder, fit on the query images' captions"``, the same encoder trained on the query
    images' own training captions against their codes: it sees what the nearest-caption route
    indexes, an upper reference for a text head on these codes, not a deployable model.
    """
    import torch

    from ..retrieval import caption_relevance, unpack_codes
    from ..semantic_distances import default_sentence_model, encode_sentences
    from ..training import text_to_image_figures, train_text_encoder
    from ..training.text_encoder import caption_training_pairs

    f = np.load(codes_file)
    bits = int(f["bits"])
    train_codes, test_codes = unpack_codes(f["train_codes"], bits), unpack_codes(f["test_codes"], bits)
    train_ids, test_ids = f["train_labels"].astype(np.int64), f["test_labels"].astype(np.int64)
    model = sentence_model or default_sentence_model()
    queries = [(pos, text) for pos, i in enumerate(test_ids) for text in data.held_out_sets[i]]
    own = np.array([pos for pos, _ in queries])
    query_emb = encode_sentences([t for _, t in queries], model, show_progress_bar=False)
    relevance = caption_relevance(data.held_out_sets, model=model)
    common = dict(relevance=relevance, image_ids=test_ids, k=k)

    def text_encoder_row(ids: np.ndarray, codes: np.ndarray, save: str | os.PathLike | None) -> dict:
        targets, captions, owner = caption_training_pairs(data.caption_sets, ids, model)
        encoder = train_text_encoder(
            codes, targets, captions, owner, sentence_model=sentence_model, steps=steps, seed=seed
        )
        if save is not None:
            encoder.save_pretrained(save)
        with torch.no_grad():
            text_codes = encoder(query_emb).numpy()
        return text_to_image_figures(text_codes, own, test_codes, **common)

    rows = {"text encoder": text_encoder_row(train_ids, train_codes, save_to)}
    if fit_on_queries:
        rows["text encoder, fit on the query images' captions"] = text_encoder_row(test_ids, test_codes, None)
    indexed = encode_sentences([data.caption_sets[i][0] for i in test_ids], model, show_progress_bar=False)
    nearest = (query_emb @ indexed.T).argmax(dim=1).numpy()
    rows["nearest caption"] = text_to_image_figures(test_codes[nearest], own, test_codes, **common)
    return rows
