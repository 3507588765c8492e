"""Text queries into an image index: sentence embeddings -> codes in the images' Hamming space."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .hash_head import HashHead

#: The folder, inside a saved model's folder, that holds its text encoder.
TEXT_ENCODER_DIR = "text_encoder"


class TextHashEncoder(nn.Module):
    """A :class:`HashHead` on sentence embeddings whose codes live in an image model's Hamming space.

    Trained (:func:`pml_shrewd.training.train_text_encoder`) with SHREWD's L_sim on text-image
    pairs: the Manhattan distance between a caption's code and an image's binary code follows
    the caption-to-image semantic distance, so ``encode(["a dog on a beach"])`` can search an
    index of image codes directly, also images indexed without any caption.

    Args:
        embedding_dim: the sentence model's embedding size (384 for all-MiniLM-L6-v2).
        num_bits: the image model's code length.
        sentence_model: the sentence-transformers name or folder that makes the embeddings
            (``None``: :func:`~pml_shrewd.semantic_distances.default_sentence_model`).
        hidden_dim, batch_norm: the head's MLP (as :class:`HashHead`).

    Example::

        encoder = TextHashEncoder.from_pretrained("runs/flickr8k-shrewd")
        codes = encoder.encode(["two dogs play in the snow"])    # (1, 64) in [0, 1]
        hits = index.search(codes > 0.5, 10)
    """

    def __init__(
        self,
        embedding_dim: int,
        num_bits: int,
        sentence_model: str | None = None,
        hidden_dim: int | None = 512,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.config = dict(
            embedding_dim=int(embedding_dim),
            num_bits=int(num_bits),
            sentence_model=None if sentence_model is None else str(sentence_model),
            hidden_dim=hidden_dim,
            batch_norm=bool(batch_norm),
        )
        self.num_bits = int(num_bits)
        self.sentence_model = self.config["sentence_model"]
        self.head = HashHead(int(embedding_dim), int(num_bits), hidden_dim=hidden_dim, batch_norm=batch_norm)

    def forward(self, sentence_embeddings: torch.Tensor) -> torch.Tensor:
        return self.head(sentence_embeddings)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Codes ``(len(texts), num_bits)`` in ``[0, 1]`` of ``texts`` (eval mode)."""
        from ..semantic_distances import default_sentence_model, encode_sentences

        texts = list(texts)
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"TextHashEncoder.encode needs non-empty texts, got {texts!r}")
        model = self.sentence_model or default_sentence_model()
        # Query texts are one-off: not written to the embedding cache.
        emb = encode_sentences(texts, model, batch_size=batch_size, show_progress_bar=False, cache=False)
        if emb.shape[1] != self.config["embedding_dim"]:
            raise ValueError(
                f"TextHashEncoder: {model!r} gives {emb.shape[1]}-d embeddings but the encoder was "
                f"trained on {self.config['embedding_dim']}-d ones"
            )
        was = self.training
        self.eval()
        try:
            return self(emb.to(next(self.parameters()).device)).cpu()
        finally:
            self.train(was)

    def save_pretrained(self, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> str:
        """Write ``config.json`` and ``weights.pt`` to ``directory`` (atomically); returns the folder.
        For a saved image model, pass ``<model folder>/text_encoder`` (:data:`TEXT_ENCODER_DIR`)."""
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, ".weights.pt.tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, os.path.join(directory, "weights.pt"))
        tmp = os.path.join(directory, ".config.json.tmp")
        with open(tmp, "w") as f:
            json.dump({**self.config, **(extra or {})}, f)
        os.replace(tmp, os.path.join(directory, "config.json"))  # last: a config means the weights are there
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> TextHashEncoder:
        """Load from ``directory`` or from ``directory/text_encoder`` (a saved image model's folder)."""
        directory = os.fspath(directory)
        if os.path.isdir(os.path.join(directory, TEXT_ENCODER_DIR)):
            directory = os.path.join(directory, TEXT_ENCODER_DIR)
        cfg_file = os.path.join(directory, "config.json")
        if not os.path.isfile(cfg_file):
            raise FileNotFoundError(
                f"no text encoder in {directory!r} (expected {cfg_file}); train one with "
                "`pml-shrewd train-text --model <run folder> --data <captions.csv>`"
            )
        try:
            with open(cfg_file) as f:
                cfg = json.load(f)
            keys = ("embedding_dim", "num_bits", "sentence_model", "hidden_dim", "batch_norm")
            encoder = cls(**{k: cfg[k] for k in keys})
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{cfg_file!r} is not a text encoder config ({err})") from err
        try:
            state = torch.load(os.path.join(directory, "weights.pt"), map_location="cpu", weights_only=True)
            encoder.load_state_dict(state)
        except (OSError, RuntimeError, EOFError) as err:
            raise ValueError(
                f"{os.path.join(directory, 'weights.pt')!r}: unreadable text encoder weights ({err})"
            ) from err
        return encoder.eval()
