"""Captioned image collections from a CSV or JSONL file (weak supervision)."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable

from PIL import Image

from .base import BadSample, ImageSamples, load_rgb


class CaptionedImages(ImageSamples):
    """Images with free-text captions; the label of sample ``i`` is caption id ``i``.

    The weak target of SHREWD (Arponen & Bishop, arXiv 2005.04917): no classes,
    only distances between captions' sentence embeddings
    (``SentenceEmbeddingDistance(dataset.captions)``).

    The file is a CSV with ``image`` and ``caption`` columns or a JSONL file with
    ``image`` and ``caption`` keys per line; an optional ``split`` column/key
    (``train``/``test``) is kept in ``splits``. Image paths are relative to the
    file's folder (or ``image_root``). A row with an empty (or blank) caption is an
    error naming the file and line. Rows whose image file does not exist are
    dropped and listed in ``missing``; images that fail to decode are skipped at
    load time (a :class:`BadSample`), so neither ever stops a run.

    Example::

        data = CaptionedImages("captions.csv", transform=model.transform())
        data.captions[0]         # 'a dog running on the beach'
        image, caption_id = data[0]
    """

    def __init__(
        self, path: str | os.PathLike, transform: Callable | None = None, image_root: str | None = None
    ) -> None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"CaptionedImages: no such file {path!r}")
        root = image_root if image_root is not None else os.path.dirname(os.path.abspath(path))
        rows = self._read_rows(path)
        self.path, self.transform = path, transform
        self.samples: list[str] = []
        self.captions: list[str] = []
        self.splits: list[str | None] = []
        self.missing: list[str] = []
        for line_no, row in rows:
            image, caption = row.get("image"), row.get("caption")
            if not image or caption is None:
                raise ValueError(f"CaptionedImages: {path}:{line_no} needs non-empty 'image' and 'caption'")
            if not isinstance(caption, str):
                raise ValueError(
                    f"CaptionedImages: {path}:{line_no}: the caption of {image!r} must be text, got {caption!r}"
                )
            if not caption.strip():
                # An empty caption would train as an empty sentence: every such image the same target.
                raise ValueError(
                    f"CaptionedImages: {path}:{line_no} has an empty caption for image {image!r} "
                    f"(got {caption!r}); give every image a caption or drop the row"
                )
            full = image if os.path.isabs(image) else os.path.join(root, image)
            if not os.path.isfile(full):
                self.missing.append(full)
                continue
            self.samples.append(full)
            self.captions.append(str(caption))
            self.splits.append(row.get("split") or None)
        if not self.samples:
            raise ValueError(
                f"CaptionedImages: no existing images listed in {path!r} ({len(self.missing)} missing)"
            )
        self.classes = self.captions
        self.targets = list(range(len(self.samples)))

    @staticmethod
    def _read_rows(path: str) -> list[tuple[int, dict]]:
        if path.endswith((".jsonl", ".json")):
            rows = []
            with open(path, encoding="utf-8") as f:
                for i, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            rows.append((i, json.loads(line)))
                        except json.JSONDecodeError as err:
                            raise ValueError(f"CaptionedImages: {path}:{i} is not valid JSON: {err}") from err
            return rows
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"image", "caption"} <= set(reader.fieldnames):
                raise ValueError(
                    f"CaptionedImages: CSV {path!r} needs 'image' and 'caption' columns, got {reader.fieldnames}"
                )
            return [(i, row) for i, row in enumerate(reader, 2)]

    def load(self, index: int) -> Image.Image | BadSample:
        try:
            return load_rgb(self.samples[index])
        except (OSError, ValueError, SyntaxError) as err:  # PIL raises these on corrupt files
            return BadSample(index, f"{type(err).__name__}: {err}")

    def sample_name(self, index: int) -> str:
        return self.samples[index]
