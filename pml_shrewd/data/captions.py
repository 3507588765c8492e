"""Captioned image collections from a CSV or JSONL file (weak supervision)."""

from __future__ import annotations

import csv
import json
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .base import ImagePaths, ImageSamples

SPLIT_NAMES = ("train", "test", "val", "dev")


def _positions(value: Any, name: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not all(
        isinstance(p, (int, np.integer)) and not isinstance(p, bool) and p >= 0 for p in value
    ):
        raise ValueError(f"CaptionedImages: {name} must be caption positions (ints >= 0), got {value!r}")
    out = tuple(int(p) for p in value)
    if not out or len(set(out)) != len(out):
        raise ValueError(f"CaptionedImages: {name} must list distinct caption positions, got {value!r}")
    return out


class CaptionedImages(ImagePaths, ImageSamples):
    """Images with free-text captions, one sample per image; the label of sample ``i`` is image id ``i``.

    The weak target of SHREWD (Arponen & Bishop, arXiv 2005.04917): no classes, only
    distances between captions' sentence embeddings. An image may have several captions
    (Flickr8k's ``captions.csv`` and COCO-style files list an image once per caption; a
    JSONL ``caption`` may also be a list): its rows are gathered, in file order, into
    ``all_caption_sets[i]``, so caption position ``p`` of an image is its ``p``-th row.

    The provider of the training targets is :meth:`semantic_distance` (a
    :class:`~pml_shrewd.semantic_distances.CaptionSetDistance` over ``caption_sets``, id =
    image id): ``target="mean"`` (default) compares the L2-normalised mean embedding of an
    image's training captions, ``target="random"`` one of them drawn afresh each epoch from
    ``(seed, epoch, image id)`` (:meth:`caption_choice`), so a resumed run draws the same.

    Held-out captions make evaluation non-circular: ``train_captions=(0, 1, 2)`` trains on
    the first three captions of each image and ``held_out_captions=(3, 4)`` (or ``"rest"``:
    every other position) keeps the others in ``held_out_sets`` for
    :func:`~pml_shrewd.retrieval.captions.evaluate_caption_codes`. The two may not overlap.

    The file is a CSV with ``image`` and ``caption`` columns or a JSONL file with ``image`` and
    ``caption`` keys. Splits: an optional ``split`` column/key (``train``/``test``/``val``/
    ``dev``; every row of an image must agree), or a split file as data sets ship it
    (``splits=`` a CSV with ``image,split`` columns; ``"auto"``, the default, reads
    ``splits.csv`` beside the captions file when the file itself has no split values). Split
    file images are matched by the ``image`` string, else by file name. Image paths are
    relative to the file's folder (or ``image_root``; when none of the first image is found
    there but ``<folder>/images/`` has it, that folder is used).

    Bad input, counted or refused, never half-used:

    - a row with an empty (or blank) caption is an error naming the file and line;
    - images whose file does not exist are dropped and listed in ``missing``;
    - images without any caption at the chosen ``train_captions`` (or ``held_out_captions``)
      positions, and split-file images that no caption row names, are dropped and listed in
      ``uncaptioned`` (with a warning giving the count);
    - images that fail to decode are skipped at load time (a :class:`BadSample`).

    Attributes: ``samples`` (paths), ``image_names`` (the ``image`` strings as written),
    ``all_caption_sets``, ``caption_sets`` (training captions), ``held_out_sets`` (empty
    tuples without ``held_out_captions``), ``captions`` (the first training caption of each
    image: a display name, and with one caption per image exactly the old caption table),
    ``splits``, ``missing``, ``uncaptioned``.

    Example::

        data = CaptionedImages("flickr8k/captions.csv", train_captions=(0, 1, 2), held_out_captions=(3, 4))
        data.caption_sets[0]         # ('a dog runs on the beach', 'a brown dog ...', '...')
        provider = data.semantic_distance()      # ids = image ids = data.targets
        image, image_id = data[0]
    """

    def __init__(
        self,
        path: str | os.PathLike,
        transform: Callable | None = None,
        image_root: str | None = None,
        *,
        target: str = "mean",
        seed: int = 0,
        train_captions: Sequence[int] | None = None,
        held_out_captions: Sequence[int] | str | None = None,
        splits: str | os.PathLike | None = "auto",
    ) -> None:
        from ..semantic_distances.caption_sets import CAPTION_TARGETS

        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"CaptionedImages: no such file {path!r}")
        if target not in CAPTION_TARGETS:
            raise ValueError(f"CaptionedImages: target must be one of {CAPTION_TARGETS}, got {target!r}")
        train_pos = _positions(train_captions, "train_captions")
        rest = held_out_captions == "rest"
        if rest and train_pos is None:
            raise ValueError("CaptionedImages: held_out_captions='rest' needs train_captions")
        held_pos = None if rest else _positions(held_out_captions, "held_out_captions")
        if train_pos is not None and held_pos is not None and set(train_pos) & set(held_pos):
            raise ValueError(
                f"CaptionedImages: train_captions {train_pos} and held_out_captions {held_pos} overlap: "
                "a held-out caption must never be a training target"
            )
        folder = os.path.dirname(os.path.abspath(path))
        rows = self._read_rows(path)
        root = image_root if image_root is not None else self._image_folder(folder, rows)
        self.path, self.transform, self.target, self.seed = path, transform, target, int(seed)
        self.train_positions, self.held_out_positions = train_pos, held_pos

        # Gather the rows of every image (first appearance order).
        order: list[str] = []
        groups: dict[str, dict[str, Any]] = {}
        missing: dict[str, None] = {}
        for line_no, row in rows:
            image, caption = row.get("image"), row.get("caption")
            if not image or caption is None:
                raise ValueError(f"CaptionedImages: {path}:{line_no} needs non-empty 'image' and 'caption'")
            texts = caption if isinstance(caption, list) else [caption]
            for text in texts:
                if not isinstance(text, str):
                    raise ValueError(
                        f"CaptionedImages: {path}:{line_no}: the caption of {image!r} must be text, got {text!r}"
                    )
                if not text.strip():
                    # An empty caption would train as an empty sentence: every such image the same target.
                    raise ValueError(
                        f"CaptionedImages: {path}:{line_no} has an empty caption for image {image!r} "
                        f"(got {text!r}); give every image a caption or drop the row"
                    )
            if not texts:
                raise ValueError(
                    f"CaptionedImages: {path}:{line_no} gives image {image!r} an empty caption list"
                )
            full = image if os.path.isabs(image) else os.path.join(root, image)
            if not os.path.isfile(full):
                missing[full] = None
                continue
            key = os.path.normpath(full)
            group = groups.get(key)
            if group is None:
                group = groups[key] = {"path": full, "name": str(image), "captions": [], "split": None}
                order.append(key)
            group["captions"].extend(str(t) for t in texts)
            split = row.get("split") or None
            if split is not None:
                split = str(split).strip().lower()
                if group["split"] not in (None, split):
                    raise ValueError(
                        f"CaptionedImages: {path}:{line_no}: image {image!r} is in split {split!r} "
                        f"but an earlier row put it in {group['split']!r}"
                    )
                group["split"] = split
        self.missing: list[str] = list(missing)
        self.uncaptioned: list[str] = []

        split_file = self._split_file(splits, folder, any(g["split"] for g in groups.values()))
        self.split_file = split_file
        if split_file is not None:
            listed = self._read_splits(split_file)
            by_name = {g["name"]: g for g in groups.values()}
            by_base: dict[str, list[dict]] = {}
            for g in groups.values():
                by_base.setdefault(os.path.basename(g["name"]), []).append(g)
            for g in groups.values():
                g["split"] = None
            for image, split in listed:
                group = by_name.get(image)
                if group is None:
                    matches = by_base.get(os.path.basename(image), [])
                    group = matches[0] if len(matches) == 1 else None
                if group is None:
                    if not any(
                        os.path.normpath(m) == os.path.normpath(os.path.join(root, image)) for m in missing
                    ):
                        self.uncaptioned.append(image)  # in the split file, no caption row names it
                    continue
                group["split"] = split

        self.samples: list[str] = []
        self.image_names: list[str] = []
        self.all_caption_sets: list[tuple[str, ...]] = []
        self.caption_sets: list[tuple[str, ...]] = []
        self.held_out_sets: list[tuple[str, ...]] = []
        self.splits: list[str | None] = []
        for key in order:
            g = groups[key]
            caps = tuple(g["captions"])
            train = caps if train_pos is None else tuple(caps[p] for p in train_pos if p < len(caps))
            if rest:
                held = tuple(c for p, c in enumerate(caps) if p not in train_pos)
            elif held_pos is not None:
                held = tuple(caps[p] for p in held_pos if p < len(caps))
            else:
                held = ()
            if not train or ((rest or held_pos is not None) and not held):
                self.uncaptioned.append(g["name"])
                continue
            self.samples.append(g["path"])
            self.image_names.append(g["name"])
            self.all_caption_sets.append(caps)
            self.caption_sets.append(train)
            self.held_out_sets.append(held)
            self.splits.append(g["split"])
        bad = sorted({s for s in self.splits if s is not None and s not in SPLIT_NAMES})
        if bad:
            raise ValueError(
                f"CaptionedImages: split values must be one of {SPLIT_NAMES}, got {bad} in {path!r}"
            )
        if self.uncaptioned:
            warnings.warn(
                f"CaptionedImages: {len(self.uncaptioned)} images skipped for having no caption"
                + ("" if train_pos is None and held_pos is None and not rest else " at the chosen positions")
                + f" (e.g. {self.uncaptioned[0]!r}); see .uncaptioned",
                stacklevel=2,
            )
        if not self.samples:
            raise ValueError(
                f"CaptionedImages: no usable images listed in {path!r} ({len(self.missing)} missing, "
                f"{len(self.uncaptioned)} without captions)"
            )
        self.captions: list[str] = [s[0] for s in self.caption_sets]
        self.classes = self.captions
        self.targets = list(range(len(self.samples)))

    # ------------------------------------------------------------------ targets

    def caption_choice(self, epoch: int) -> np.ndarray:
        """The training-caption position drawn for every image in ``epoch`` (``target="random"``):
        :func:`~pml_shrewd.semantic_distances.draw_captions` of ``(seed, epoch, image id)``."""
        from ..semantic_distances.caption_sets import draw_captions

        return draw_captions([len(s) for s in self.caption_sets], self.seed, epoch)

    def target_captions(self, epoch: int = 0) -> list[str]:
        """With ``target="random"``, the caption each image trains on in ``epoch``."""
        return [s[p] for s, p in zip(self.caption_sets, self.caption_choice(epoch))]

    def semantic_distance(self, model: Any = None, **kwargs: Any):
        """The training-target provider: a :class:`~pml_shrewd.semantic_distances.CaptionSetDistance`
        over ``caption_sets`` with this data set's ``target`` and ``seed`` (ids = image ids =
        ``targets``). ``kwargs`` go to it (``metric``, ``batch_size``, ``device``, ...)."""
        from ..semantic_distances.caption_sets import CaptionSetDistance

        return CaptionSetDistance(
            self.caption_sets, target=self.target, seed=self.seed, model=model, **kwargs
        )

    def indices_of(self, split: str) -> list[int]:
        """The images of ``split`` (``"dev"`` and ``"val"`` are one split)."""
        names = {"dev", "val"} if split in ("dev", "val") else {split}
        return [i for i, s in enumerate(self.splits) if s in names]

    # ------------------------------------------------------------------ reading

    @staticmethod
    def _image_folder(folder: str, rows: list[tuple[int, dict]]) -> str:
        first = next((row.get("image") for _, row in rows if row.get("image")), None)
        if isinstance(first, str) and not os.path.isabs(first):
            if not os.path.isfile(os.path.join(folder, first)) and os.path.isfile(
                os.path.join(folder, "images", first)
            ):
                return os.path.join(folder, "images")
        return folder

    @staticmethod
    def _split_file(splits: Any, folder: str, has_split_values: bool) -> str | None:
        if splits is None:
            return None
        if splits == "auto":
            auto = os.path.join(folder, "splits.csv")
            return auto if not has_split_values and os.path.isfile(auto) else None
        splits = os.fspath(splits)
        if not os.path.isfile(splits):
            raise FileNotFoundError(f"CaptionedImages: no such split file {splits!r}")
        return splits

    @staticmethod
    def _read_splits(path: str) -> list[tuple[str, str]]:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"image", "split"} <= set(reader.fieldnames):
                raise ValueError(
                    f"CaptionedImages: split file {path!r} needs 'image' and 'split' columns, got {reader.fieldnames}"
                )
            out = []
            for i, row in enumerate(reader, 2):
                image, split = (row.get("image") or "").strip(), (row.get("split") or "").strip().lower()
                if not image or split not in SPLIT_NAMES:
                    raise ValueError(
                        f"CaptionedImages: {path}:{i} needs an image and a split in {SPLIT_NAMES}, got {row!r}"
                    )
                out.append((image, split))
            return out

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
