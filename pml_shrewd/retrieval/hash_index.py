"""A Hamming-distance search index over faiss binary indexes, with item ids and labels.

SHREWD / SHRED codes (Arponen & Bishop, arXiv 2005.04917) are searched by Hamming
distance. :class:`HashIndex` wraps faiss's binary indexes (``IndexBinaryFlat``
by default: exact, fast popcount; ``IndexBinaryHNSW`` / ``IndexBinaryIVF`` /
``IndexBinaryMultiHash`` for large databases) inside faiss's ``IndexBinaryIDMap2``,
which keeps the item ids (all four index types support it), and keeps beside it the
metadata a user needs: the number of bits, the index type and the labels.

Example::

    index = HashIndex(num_bits=64)
    index.add(binarize(db_z), labels=db_labels)
    distances, ids = index.search(binarize(query_z), k=250)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .codes import pack_codes, to_numpy

__all__ = ["HashIndex"]

INDEX_TYPES = ("flat", "hnsw", "ivf", "multihash")
# 2: the faiss file is an IndexBinaryIDMap2 holding the ids; 1 (still read): a bare index, ids in the sidecar.
_FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)


class HashIndex:
    """Hamming search over binary codes (a faiss binary index plus ids, labels and settings).

    Args:
        num_bits: code length K; must be a positive multiple of 8 (faiss stores bytes).
        index_type: ``"flat"`` (exact; ties broken by insertion order, like the metrics),
            ``"hnsw"`` (graph, approximate), ``"ivf"`` (inverted lists, approximate;
            needs training, see below) or ``"multihash"`` (exact Hamming within the hashed
            buckets; may return fewer than k results).
        hnsw_m: neighbours per HNSW node (``IndexBinaryHNSW(d, M)``).
        ef_search, ef_construction: HNSW search / build breadth.
        nlist: IVF lists; ``None`` picks ``round(sqrt(n))`` (at most ``n // 39``, at least 1)
            from the codes it is trained on.
        nprobe: IVF lists visited per query.
        num_tables, bits_per_table, max_flips: multi-hash tables, bits hashed per table
            (``None``: ``min(16, num_bits // num_tables)``) and bit flips explored per table.

    **IVF training**: an untrained IVF index trains itself on the codes of the first
    :meth:`add` call (or call :meth:`train` with a representative sample first).

    **Codes**: :meth:`add`, :meth:`search` and :meth:`range_search` take *unpacked* 0/1
    codes ``(N, num_bits)`` (numpy or torch); :meth:`add_packed` / :meth:`search_packed`
    take ``uint8`` rows ``(N, num_bits / 8)`` from :func:`pack_codes`. Being explicit
    avoids guessing: an ``(N, 8)`` uint8 array could be either.

    **Results**: distances are ``int32`` Hamming distances; ids are the item ids given
    to :meth:`add` (default: insertion positions 0, 1, ...; ids must be unique and
    non-negative, ``ValueError`` otherwise). Where an approximate index finds fewer than
    ``k`` items, ids are ``-1`` and distances ``num_bits + 1``.

    Example::

        index = HashIndex(64, index_type="hnsw")
        index.add(train_bits, labels=train_labels)
        dist, ids = index.search(test_bits, k=10); neighbour_labels = index.get_labels(ids)
    """

    def __init__(
        self,
        num_bits: int,
        index_type: str = "flat",
        *,
        hnsw_m: int = 16,
        ef_search: int = 64,
        ef_construction: int = 40,
        nlist: int | None = None,
        nprobe: int = 8,
        num_tables: int = 4,
        bits_per_table: int | None = None,
        max_flips: int = 2,
    ):
        if isinstance(num_bits, bool) or not isinstance(num_bits, (int, np.integer)) or num_bits <= 0:
            raise ValueError(f"num_bits must be a positive integer, got {num_bits!r}")
        if num_bits % 8 != 0:
            raise ValueError(
                f"num_bits={num_bits} must be a multiple of 8 (faiss binary indexes store bytes)"
            )
        if index_type not in INDEX_TYPES:
            raise ValueError(f"index_type must be one of {INDEX_TYPES}, got {index_type!r}")
        self.num_bits = int(num_bits)
        self.index_type = index_type
        self.options: dict[str, Any] = {
            "hnsw_m": hnsw_m,
            "ef_search": ef_search,
            "ef_construction": ef_construction,
            "nlist": nlist,
            "nprobe": nprobe,
            "num_tables": num_tables,
            "bits_per_table": (
                bits_per_table if bits_per_table is not None else max(1, min(16, self.num_bits // num_tables))
            ),
            "max_flips": max_flips,
        }
        if index_type == "multihash" and num_tables * self.options["bits_per_table"] > self.num_bits:
            raise ValueError(
                f"multihash needs num_tables * bits_per_table <= num_bits, got "
                f"{num_tables} * {self.options['bits_per_table']} > {self.num_bits}"
            )
        self._quantizer = None
        # faiss's IndexBinaryIDMap2 around the index: it maps positions to item ids.
        self._index = None if index_type == "ivf" else faiss.IndexBinaryIDMap2(self._build(None))
        self._labels: np.ndarray | None = None
        self._id_cache: tuple[np.ndarray, np.ndarray] | None = None  # (ids, argsort of ids)

    # ------------------------------------------------------------------ construction

    def _build(self, n_train: int | None):
        o, d = self.options, self.num_bits
        if self.index_type == "flat":
            index = faiss.IndexBinaryFlat(d)
        elif self.index_type == "hnsw":
            index = faiss.IndexBinaryHNSW(d, int(o["hnsw_m"]))
            index.hnsw.efConstruction = int(o["ef_construction"])
        elif self.index_type == "multihash":
            index = faiss.IndexBinaryMultiHash(d, int(o["num_tables"]), int(o["bits_per_table"]))
        else:
            nlist = o["nlist"]
            if nlist is None:
                nlist = int(max(1, min(round(np.sqrt(n_train)), n_train // 39)))
                self.options["nlist"] = nlist
            self._quantizer = faiss.IndexBinaryFlat(d)  # kept: the IVF index does not own it
            index = faiss.IndexBinaryIVF(self._quantizer, d, int(nlist))
        self._apply_search_options(index)
        return index

    def _check_packed(self, packed: Any, name: str) -> np.ndarray:
        arr = to_numpy(packed, name)
        if arr.ndim != 2 or arr.dtype != np.uint8:
            raise ValueError(f"{name} must be a 2-D uint8 array of packed codes, got {arr.dtype} {arr.shape}")
        if arr.shape[1] * 8 != self.num_bits:
            raise ValueError(
                f"{name} have {arr.shape[1]} bytes ({arr.shape[1] * 8} bits) per code, "
                f"but this index holds {self.num_bits}-bit codes"
            )
        return np.ascontiguousarray(arr)

    def _pack(self, codes: Any, name: str) -> np.ndarray:
        arr = to_numpy(codes, name)
        if arr.ndim != 2:
            raise ValueError(f"{name} must be a 2-D (N, num_bits) array of 0/1 codes, got shape {arr.shape}")
        if arr.shape[1] != self.num_bits:
            hint = (
                " (packed bytes? use add_packed / search_packed)" if arr.shape[1] * 8 == self.num_bits else ""
            )
            raise ValueError(
                f"{name} have {arr.shape[1]} bits per code but this index holds {self.num_bits}-bit codes{hint}"
            )
        return pack_codes(arr)

    # ------------------------------------------------------------------ adding

    def train(self, codes: Any) -> HashIndex:
        """Train an IVF index on unpacked 0/1 codes (other index types need no training)."""
        return self.train_packed(self._pack(codes, "codes"))

    def train_packed(self, packed: Any) -> HashIndex:
        """:meth:`train` for packed ``uint8`` codes."""
        packed = self._check_packed(packed, "packed codes")
        if self.index_type != "ivf":
            return self
        if self._index is not None:
            raise RuntimeError("this IVF index is already trained")
        ivf = self._build(len(packed))
        if len(packed) < ivf.nlist:
            raise ValueError(f"IVF training needs at least nlist={ivf.nlist} codes, got {len(packed)}")
        ivf.train(packed)
        self._index = faiss.IndexBinaryIDMap2(ivf)
        return self

    def add(self, codes: Any, ids: Any = None, labels: Any = None) -> HashIndex:
        """Add unpacked 0/1 codes ``(N, num_bits)`` with optional item ids and labels.

        ``ids``: unique non-negative int64 item ids (default: positions continuing from
        ``len(self)``); an id given twice, or already in the index, is a ``ValueError``.
        ``labels``: one integer label per item; give labels with every call or never.
        """
        return self.add_packed(self._pack(codes, "codes"), ids=ids, labels=labels)

    def add_packed(self, packed: Any, ids: Any = None, labels: Any = None) -> HashIndex:
        """:meth:`add` for packed ``uint8`` codes ``(N, num_bits / 8)``."""
        packed = self._check_packed(packed, "packed codes")
        n = len(packed)
        ids = (
            np.arange(len(self), len(self) + n, dtype=np.int64)
            if ids is None
            else self._check_column(ids, n, "ids")
        )
        if labels is not None:
            labels = self._check_column(labels, n, "labels")
            if self._labels is None and len(self) > 0:
                raise ValueError("labels were not given for the items already in the index")
        elif self._labels is not None:
            raise ValueError("this index stores labels: pass labels= for the new items too")
        self._check_new_ids(ids)
        if self.index_type == "ivf" and self._index is None:
            self.train_packed(packed)  # documented: train on the first codes added
        self._index.add_with_ids(packed, np.ascontiguousarray(ids))
        self._id_cache = None
        if labels is not None:
            self._labels = labels if self._labels is None else np.concatenate([self._labels, labels])
        return self

    def _check_new_ids(self, ids: np.ndarray) -> None:
        if len(ids) and ids.min() < 0:
            raise ValueError(f"ids must be non-negative (-1 marks a missing result), got {int(ids.min())}")
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            dup = uniq[counts > 1]
            raise ValueError(
                f"duplicate ids in this add: {dup[:5].tolist()}{' ...' if len(dup) > 5 else ''} "
                f"({len(dup)} ids given more than once); item ids must be unique"
            )
        if len(self):
            taken = uniq[np.isin(uniq, self.ids)]
            if len(taken):
                raise ValueError(
                    f"ids already in the index: {taken[:5].tolist()}{' ...' if len(taken) > 5 else ''} "
                    f"({len(taken)} ids); item ids must be unique (pass new ids, or ids=None for "
                    "positions continuing from len(index))"
                )

    @staticmethod
    def _check_column(values: Any, n: int, name: str) -> np.ndarray:
        arr = to_numpy(values, name)
        if arr.ndim != 1 or len(arr) != n:
            raise ValueError(
                f"{name} must be a 1-D array with one entry per code ({n}), got shape {arr.shape}"
            )
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name} must be integers, got dtype {arr.dtype}")
        return arr.astype(np.int64)

    # ------------------------------------------------------------------ searching

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by Hamming distance for unpacked 0/1 queries: ``(distances, ids)``, each ``(Q, k)``."""
        return self.search_packed(self._pack(queries, "queries"), k)

    def search_packed(self, packed: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` for packed ``uint8`` queries."""
        packed = self._check_packed(packed, "packed queries")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if self._index is None or len(self) == 0:
            raise RuntimeError("the index is empty: add codes before searching")
        dist, ids = self._index.search(packed, int(k))  # the id map returns item ids, -1 if missing
        missing = ids < 0
        dist = dist.astype(np.int32, copy=False)
        dist[missing] = self.num_bits + 1
        return dist, ids

    def range_search(self, queries: Any, radius: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """All items within Hamming distance ``radius`` (inclusive) of each unpacked query.

        Returns one ``(distances, ids)`` pair per query, sorted by distance then insertion
        order. Exact for ``"flat"``; ``"ivf"`` searches only its ``nprobe`` lists (exact when
        ``nprobe >= nlist``); ``"multihash"`` is exact for ``radius < num_tables * (max_flips + 1)``
        when its tables cover all bits, else it may miss items. Approximate results hold true
        distances and never an item beyond the radius. Not available for ``"hnsw"`` (faiss has
        no binary HNSW range search): ``NotImplementedError``.
        """
        return self.range_search_packed(self._pack(queries, "queries"), radius)

    def range_search_packed(self, packed: Any, radius: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`range_search` for packed ``uint8`` queries."""
        packed = self._check_packed(packed, "packed queries")
        if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
            raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
        if self.index_type == "hnsw":
            raise NotImplementedError("range_search is not supported by faiss's binary HNSW index")
        if self._index is None or len(self) == 0:
            return [(np.zeros(0, np.int32), np.zeros(0, np.int64)) for _ in range(len(packed))]
        # faiss keeps distances strictly below its radius: +1 makes ours inclusive.
        lims, dist, found = self._index.range_search(packed, int(radius) + 1)
        pos = self._positions(np.asarray(found, dtype=np.int64))  # insertion order, for ties
        out = []
        for i in range(len(packed)):
            d = np.asarray(dist[lims[i] : lims[i + 1]]).astype(np.int32)
            p, ids = pos[lims[i] : lims[i + 1]], np.asarray(found[lims[i] : lims[i + 1]], dtype=np.int64)
            order = np.lexsort((p, d))
            out.append((d[order], ids[order]))
        return out

    # ------------------------------------------------------------------ metadata

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    @property
    def ids(self) -> np.ndarray:
        """Item ids in insertion order (read from faiss's id map)."""
        return self._id_lookup()[0]

    def _id_lookup(self) -> tuple[np.ndarray, np.ndarray]:
        if self._id_cache is None:
            ids = (
                np.zeros(0, np.int64)
                if self._index is None
                else faiss.vector_to_array(self._index.id_map).astype(np.int64)
            )
            self._id_cache = (ids, np.argsort(ids, kind="stable"))
        return self._id_cache

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        """Insertion positions of item ``ids`` (any shape); ``-1`` for ``-1``; ``KeyError`` for unknown ids."""
        all_ids, order = self._id_lookup()
        sorted_ids = all_ids[order]
        where = np.clip(np.searchsorted(sorted_ids, ids), 0, max(len(sorted_ids) - 1, 0))
        found = (sorted_ids[where] == ids) if len(sorted_ids) else np.zeros(ids.shape, bool)
        if not found[ids >= 0].all():
            raise KeyError(f"unknown item id {ids[(ids >= 0) & ~found].ravel()[0]}")
        return np.where(ids < 0, -1, order[where] if len(order) else -1)

    @property
    def labels(self) -> np.ndarray | None:
        """Item labels in insertion order (``None`` if none were given)."""
        return self._labels

    def get_labels(self, ids: Any) -> np.ndarray:
        """Labels of items by id (any shape; ``-1`` ids map to label ``-1``)."""
        if self._labels is None:
            raise ValueError("this index stores no labels; pass labels= to add()")
        ids = np.asarray(to_numpy(ids, "ids"), dtype=np.int64)
        pos = self._positions(ids)
        return np.where(pos < 0, -1, self._labels[np.maximum(pos, 0)] if len(self._labels) else -1)

    def memory_bytes(self) -> int:
        """Bytes of the serialised faiss index (with its id map) plus labels (what a save writes)."""
        index_bytes = 0 if self._index is None else len(faiss.serialize_index_binary(self._index))
        return index_bytes + (0 if self._labels is None else self._labels.nbytes)

    def __repr__(self) -> str:
        return f"HashIndex(num_bits={self.num_bits}, index_type={self.index_type!r}, size={len(self)})"

    def _apply_search_options(self, index=None) -> None:
        # Search-time settings are not all stored in faiss files: set them again after loading
        # (on the index inside the id map unless ``index`` is given).
        o = self.options
        if index is None:
            index = faiss.downcast_IndexBinary(self._index.index)
        if self.index_type == "flat":
            # The counting search (not the heap) returns ties in insertion order.
            index.use_heap = False
        elif self.index_type == "hnsw":
            index.hnsw.efSearch = int(o["ef_search"])
        elif self.index_type == "ivf":
            index.nprobe = int(o["nprobe"])
        else:
            index.nflip = int(o["max_flips"])

    # ------------------------------------------------------------------ persistence

    @staticmethod
    def _meta_path(path: Path) -> Path:
        return path.with_name(path.name + ".meta.npz")

    def save(self, path: str | Path) -> Path:
        """Write the faiss index (an ``IndexBinaryIDMap2``: codes and ids) to ``path`` and the
        metadata to ``<path>.meta.npz``.

        The sidecar holds a JSON config (bits, index type, options, format version) and the
        labels. Returns ``path``. (Format 1, read by :meth:`load` too, kept the ids in the
        sidecar beside a bare faiss index.)
        """
        if self._index is None:
            raise RuntimeError("nothing to save: the IVF index has not been trained or filled")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        faiss.write_index_binary(self._index, str(path))
        config = {
            "format_version": _FORMAT_VERSION,
            "num_bits": self.num_bits,
            "index_type": self.index_type,
            "options": self.options,
            "has_labels": self._labels is not None,
        }
        with open(self._meta_path(path), "wb") as f:
            np.savez(
                f,
                config=np.array(json.dumps(config)),
                labels=self._labels if self._labels is not None else np.zeros(0, np.int64),
            )
        return path

    @staticmethod
    def _read_meta(meta_path: Path) -> tuple[dict[str, Any], np.ndarray | None, np.ndarray]:
        """``(config, ids or None, labels)`` from a sidecar; errors name the file and the problem."""
        if meta_path.stat().st_size == 0:
            raise ValueError(f"HashIndex metadata {meta_path} is empty; save the index again")
        try:
            with np.load(meta_path, allow_pickle=False) as meta:
                config = json.loads(str(meta["config"]))
                ids = meta["ids"].astype(np.int64) if "ids" in meta.files else None
                labels = meta["labels"].astype(np.int64)
        except KeyError as err:
            raise ValueError(f"HashIndex metadata {meta_path} lacks {err}; save the index again") from err
        except Exception as err:  # zipfile / npy / JSON errors of a truncated or foreign file
            raise ValueError(
                f"cannot read HashIndex metadata {meta_path} (truncated or not written by HashIndex.save: "
                f"{type(err).__name__}: {err}); save the index again"
            ) from err
        if not isinstance(config, dict) or config.get("format_version") not in _READABLE_VERSIONS:
            version = config.get("format_version") if isinstance(config, dict) else None
            raise ValueError(
                f"{meta_path}: unsupported HashIndex format version {version!r} "
                f"(this version reads {list(_READABLE_VERSIONS)})"
            )
        missing = [key for key in ("num_bits", "index_type", "options", "has_labels") if key not in config]
        if missing or (config["format_version"] == 1 and ids is None):
            raise ValueError(
                f"HashIndex metadata {meta_path} lacks {missing or ['ids']}; save the index again"
            )
        return config, ids, labels

    @staticmethod
    def _read_faiss(path: Path):
        if path.stat().st_size == 0:
            raise ValueError(
                f"HashIndex file {path} is empty (an interrupted save?); build and save it again"
            )
        try:
            return faiss.read_index_binary(str(path))
        except RuntimeError as err:
            reason = str(err).strip().splitlines()[-1]
            reason = reason.split("Error: ", 1)[-1]
            raise ValueError(
                f"cannot read the faiss index {path}: truncated or not a faiss binary index ({reason}); "
                "build and save it again"
            ) from err

    @classmethod
    def load(cls, path: str | Path) -> HashIndex:
        """Read an index written by :meth:`save` (the faiss file and its ``.meta.npz`` sidecar).

        Missing files are a ``FileNotFoundError``; empty, truncated or mismatched files a
        ``ValueError`` naming the file and what is wrong.
        """
        path = Path(path)
        meta_path = cls._meta_path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no index file at {path}")
        if not meta_path.is_file():
            raise FileNotFoundError(f"missing metadata sidecar {meta_path} (written by HashIndex.save)")
        config, ids, labels = cls._read_meta(meta_path)
        obj = cls(config["num_bits"], config["index_type"], **config["options"])
        index = cls._read_faiss(path)
        if config["format_version"] == 1:  # a bare index; the ids come from the sidecar
            if isinstance(index, faiss.IndexBinaryIDMap2) or index.ntotal != len(ids):
                raise ValueError(f"{path} does not match its metadata {meta_path} ({index.ntotal} items)")
            index = _wrap_filled(index, ids)
        elif not isinstance(index, faiss.IndexBinaryIDMap2):
            raise ValueError(
                f"{path} holds a {type(index).__name__}, not the IndexBinaryIDMap2 HashIndex saves"
            )
        if index.d != obj.num_bits:
            raise ValueError(
                f"{path} holds {index.d}-bit codes but its metadata {meta_path} says {obj.num_bits}"
            )
        if config["has_labels"] and len(labels) != index.ntotal:
            raise ValueError(f"{path} holds {index.ntotal} items but {meta_path} has {len(labels)} labels")
        obj._index = index
        obj._apply_search_options()
        obj._labels = labels if config["has_labels"] else None
        obj._id_cache = None
        return obj


def _wrap_filled(index, ids: np.ndarray):
    """An ``IndexBinaryIDMap2`` over an already filled index (faiss's constructor wants it empty)."""
    n = index.ntotal
    index.ntotal = 0
    try:
        wrapped = faiss.IndexBinaryIDMap2(index)  # keeps a Python reference to ``index``
    finally:
        index.ntotal = n
    wrapped.ntotal = n
    faiss.copy_array_to_vector(np.ascontiguousarray(ids, dtype=np.int64), wrapped.id_map)
    wrapped.construct_rev_map()
    return wrapped
