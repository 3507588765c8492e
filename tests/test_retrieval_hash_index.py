"""HashIndex against brute-force numpy Hamming distances (popcount over xor)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pml_shrewd.retrieval import HashIndex, pack_codes


def brute_force(queries, db):
    """Hamming distances by popcount of xor-ed packed bytes, with explicit (distance, index) sorting."""
    qp, dp = np.packbits(queries, axis=1), np.packbits(db, axis=1)
    dist = np.array([[int(np.unpackbits(np.bitwise_xor(q, d)).sum()) for d in dp] for q in qp])
    order = [sorted(range(len(db)), key=lambda j, row=row: (row[j], j)) for row in dist]
    return dist, np.array(order)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    db = rng.integers(0, 2, (300, 16)).astype(np.uint8)  # 16 bits: many ties
    queries = rng.integers(0, 2, (12, 16)).astype(np.uint8)
    labels = rng.integers(0, 7, 300)
    return db, queries, labels


@pytest.mark.parametrize("k", [1, 5, 64, 300])
def test_flat_search_equals_brute_force_including_tie_order(data, k):
    db, queries, _ = data
    index = HashIndex(16)
    index.add(db[:100]).add(torch.from_numpy(db[100:]))  # two batches, torch input
    dist, ids = index.search(queries, k)
    ref_dist, ref_order = brute_force(queries, db)
    np.testing.assert_array_equal(ids, ref_order[:, :k])
    np.testing.assert_array_equal(dist, np.take_along_axis(ref_dist, ref_order[:, :k], axis=1))
    d2, i2 = index.search_packed(pack_codes(queries), k)
    np.testing.assert_array_equal(i2, ids)
    assert len(index) == 300


def test_custom_ids_and_labels_map_through_search(data):
    db, queries, labels = data
    ids = np.arange(300, dtype=np.int64) * 10 + 7
    index = HashIndex(16).add(db, ids=ids, labels=labels)
    _, got = index.search(queries, 9)
    _, ref_order = brute_force(queries, db)
    np.testing.assert_array_equal(got, ids[ref_order[:, :9]])
    np.testing.assert_array_equal(index.get_labels(got), labels[ref_order[:, :9]])
    with pytest.raises(KeyError, match="unknown item id"):
        index.get_labels([3])


@pytest.mark.parametrize("radius", [0, 3, 6])
def test_range_search_is_inclusive_and_sorted(data, radius):
    db, queries, _ = data
    index = HashIndex(16, "flat").add(db)
    ref_dist, _ = brute_force(queries, db)
    results = index.range_search(queries, radius)
    assert len(results) == len(queries)
    for row, (d, i) in zip(ref_dist, results, strict=True):
        expected = sorted((int(row[j]), j) for j in range(len(db)) if row[j] <= radius)
        assert list(zip(d.tolist(), i.tolist(), strict=True)) == expected


def within_radius(queries, db, radius):
    """Per query, the sorted (distance, position) pairs of all items within radius, by brute force."""
    ref_dist, _ = brute_force(queries, db)
    return [sorted((int(row[j]), j) for j in range(len(db)) if row[j] <= radius) for row in ref_dist]


@pytest.fixture
def range_data(data):
    db, queries, _ = data
    # Exact copies of some queries in the database: radius 0 has hits.
    return np.concatenate([db, queries[:5], queries[:2]]), queries


@pytest.mark.parametrize("radius", [0, 2, 5, 9])
@pytest.mark.parametrize("nlist", [1, 4])
def test_ivf_range_search_visiting_every_list_equals_brute_force(range_data, radius, nlist):
    db, queries = range_data
    index = HashIndex(16, "ivf", nlist=nlist, nprobe=nlist).add(db)
    results = index.range_search(queries, radius)
    expected = within_radius(queries, db, radius)
    assert sum(len(e) for e in expected[:5]) >= 5  # the copies
    for (d, i), exp in zip(results, expected, strict=True):
        assert list(zip(d.tolist(), i.tolist(), strict=True)) == exp


@pytest.mark.parametrize("radius", [0, 3, 6])
def test_ivf_range_search_with_few_probes_is_an_exact_subset(range_data, radius):
    db, queries = range_data
    ids = np.arange(len(db), dtype=np.int64) * 3 + 1  # custom ids map through
    index = HashIndex(16, "ivf", nlist=8, nprobe=1).add(db, ids=ids)
    results = index.range_search(queries, radius)
    expected = within_radius(queries, db, radius)
    found = total = 0
    for (d, i), exp in zip(results, expected, strict=True):
        got = list(zip(d.tolist(), ((i - 1) // 3).tolist(), strict=True))
        assert set(got) <= set(exp) and got == sorted(got)  # true distances, sorted, no false hits
        found, total = found + len(got), total + len(exp)
    assert 0 < found < total if radius else found == total  # radius 0: the copies sit in the query's list


@pytest.mark.parametrize("radius", [0, 3, 7, 11])
def test_multihash_range_search_equals_brute_force_within_its_guarantee(range_data, radius):
    # 4 tables of 4 bits cover all 16 bits; with 2 flips per table, an item at distance <= 11 differs
    # from the query in <= 2 bits of some table (pigeonhole), so it is found: exact up to radius 11.
    db, queries = range_data
    index = HashIndex(16, "multihash", num_tables=4, bits_per_table=4, max_flips=2).add(db)
    results = index.range_search(queries, radius)
    for (d, i), exp in zip(results, within_radius(queries, db, radius), strict=True):
        assert list(zip(d.tolist(), i.tolist(), strict=True)) == exp


def test_multihash_range_search_beyond_its_guarantee_is_an_exact_subset(range_data):
    db, queries = range_data
    index = HashIndex(16, "multihash", num_tables=2, bits_per_table=8, max_flips=1).add(db)
    exact = index.range_search(queries, 3)  # 2 tables x (1 flip + 1) > 3: exact
    for (d, i), exp in zip(exact, within_radius(queries, db, 3), strict=True):
        assert list(zip(d.tolist(), i.tolist(), strict=True)) == exp
    found = total = 0
    for (d, i), exp in zip(index.range_search(queries, 8), within_radius(queries, db, 8), strict=True):
        got = list(zip(d.tolist(), i.tolist(), strict=True))
        assert set(got) <= set(exp) and got == sorted(got)
        found, total = found + len(got), total + len(exp)
    assert 0 < found < total


def test_hnsw_range_search_raises_a_clear_error(range_data):
    db, queries = range_data
    index = HashIndex(16, "hnsw").add(db)
    with pytest.raises(NotImplementedError, match="range_search is not supported by faiss's binary HNSW"):
        index.range_search(queries, 2)
    with pytest.raises(NotImplementedError, match="HNSW"):
        index.range_search_packed(pack_codes(queries), 2)


@pytest.mark.parametrize("index_type", ["flat", "ivf", "multihash"])
def test_range_search_on_an_empty_index_finds_nothing(index_type, data):
    _, queries, _ = data
    results = HashIndex(16, index_type, nlist=2).range_search(queries, 16)
    assert len(results) == len(queries) and all(len(d) == len(i) == 0 for d, i in results)


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf", "multihash"])
def test_save_load_round_trip(tmp_path, data, index_type):
    db, queries, labels = data
    index = HashIndex(16, index_type, nlist=4).add(db, labels=labels)
    d1, i1 = index.search(queries, 10)
    path = index.save(tmp_path / "sub" / "codes.faiss")
    loaded = HashIndex.load(path)
    assert (loaded.num_bits, loaded.index_type, len(loaded)) == (16, index_type, 300)
    assert loaded.options == index.options
    d2, i2 = loaded.search(queries, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(d1, d2)
    np.testing.assert_array_equal(loaded.labels, labels)
    assert loaded.memory_bytes() > 0


@pytest.mark.parametrize("index_type", ["hnsw", "ivf", "multihash"])
def test_approximate_indexes_return_true_hamming_distances(data, index_type):
    db, queries, _ = data
    index = HashIndex(16, index_type, nlist=4, nprobe=4).add(db)
    dist, ids = index.search(queries, 10)
    ref_dist, ref_order = brute_force(queries, db)
    found = ids >= 0
    assert found.any()
    np.testing.assert_array_equal(
        dist[found], np.take_along_axis(ref_dist, np.where(found, ids, 0), 1)[found]
    )
    assert (dist[~found] == 17).all()
    # Distances come sorted; the k-th is never better than the exact k-th.
    assert (np.diff(dist, axis=1) >= 0).all()
    kth_exact = np.take_along_axis(ref_dist, ref_order[:, :10], 1)
    assert (dist >= kth_exact).all()


def test_ivf_trains_on_first_add_and_explicit_train(data):
    db, _, _ = data
    index = HashIndex(16, "ivf", nlist=5)
    assert len(index) == 0
    index.add(db[:200]).add(db[200:])
    assert len(index) == 300 and index._index.is_trained
    index2 = HashIndex(16, "ivf").train(db)
    assert index2.options["nlist"] >= 1
    with pytest.raises(ValueError, match="at least nlist"):
        HashIndex(16, "ivf", nlist=50).add(db[:10])


def test_errors_are_clear(data, tmp_path):
    db, queries, labels = data
    with pytest.raises(ValueError, match="multiple of 8"):
        HashIndex(12)
    with pytest.raises(ValueError, match="index_type"):
        HashIndex(16, "lsh")
    index = HashIndex(16)
    with pytest.raises(RuntimeError, match="empty"):
        index.search(queries, 3)
    index.add(db)
    with pytest.raises(ValueError, match="32 bits per code"):
        index.search(np.zeros((2, 32), np.uint8), 3)
    with pytest.raises(ValueError, match="add_packed"):
        index.add(pack_codes(db))
    with pytest.raises(ValueError, match="bits"):
        index.search_packed(np.zeros((2, 4), np.uint8), 3)
    with pytest.raises(ValueError, match="only 0 and 1"):
        index.search(np.full((2, 16), 3, np.uint8), 3)
    with pytest.raises(ValueError, match="labels"):
        index.add(db[:3], labels=labels[:3])
    with pytest.raises(ValueError, match="k must be"):
        index.search(queries, 0)
    with pytest.raises(NotImplementedError):
        HashIndex(16, "hnsw").add(db).range_search(queries, 2)
    with pytest.raises(FileNotFoundError, match="sidecar"):
        import faiss

        faiss.write_index_binary(faiss.IndexBinaryFlat(16), str(tmp_path / "bare.faiss"))
        HashIndex.load(tmp_path / "bare.faiss")


def test_duplicate_ids_are_refused_by_name(data):
    db, _, labels = data
    index = HashIndex(16)
    with pytest.raises(ValueError, match=r"duplicate ids in this add: \[5\]"):
        index.add(db[:3], ids=[5, 6, 5])
    assert len(index) == 0  # nothing half-added
    index.add(db[:3], ids=[5, 6, 7])
    with pytest.raises(ValueError, match=r"ids already in the index: \[7\]"):
        index.add(db[3:5], ids=[8, 7])
    with pytest.raises(ValueError, match=r"ids already in the index: \[6, 7, 8\]"):
        HashIndex(16).add(db[:6], ids=np.arange(6) + 3).add(db[:3])  # default ids 6, 7, 8: taken
    with pytest.raises(ValueError, match="non-negative"):
        index.add(db[:1], ids=[-1])
    assert index.ids.tolist() == [5, 6, 7] and len(index) == 3


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf", "multihash"])
def test_faiss_keeps_the_ids(tmp_path, data, index_type):
    import faiss

    db, queries, _ = data
    ids = np.arange(300, dtype=np.int64)[::-1] * 3 + 1
    index = HashIndex(16, index_type, nlist=4, nprobe=4).add(db, ids=ids)
    assert isinstance(index._index, faiss.IndexBinaryIDMap2)
    np.testing.assert_array_equal(index.ids, ids)
    path = index.save(tmp_path / "i.faiss")
    assert isinstance(faiss.read_index_binary(str(path)), faiss.IndexBinaryIDMap2)
    assert "ids" not in np.load(str(path) + ".meta.npz").files  # the faiss file holds them
    np.testing.assert_array_equal(HashIndex.load(path).search(queries, 7)[1], index.search(queries, 7)[1])


def test_format_1_indexes_still_load(tmp_path, data):
    import json

    import faiss

    db, queries, labels = data
    ids = np.arange(300, dtype=np.int64) * 2 + 11
    # What HashIndex.save wrote before the id map: a bare index and the ids in the sidecar.
    bare = faiss.IndexBinaryFlat(16)
    bare.add(pack_codes(db))
    faiss.write_index_binary(bare, str(tmp_path / "old.faiss"))
    options = HashIndex(16).options
    config = {
        "format_version": 1,
        "num_bits": 16,
        "index_type": "flat",
        "options": options,
        "has_labels": True,
    }
    with open(tmp_path / "old.faiss.meta.npz", "wb") as f:
        np.savez(f, config=np.array(json.dumps(config)), ids=ids, labels=labels)
    loaded = HashIndex.load(tmp_path / "old.faiss")
    _, got = loaded.search(queries, 9)
    _, ref_order = brute_force(queries, db)
    np.testing.assert_array_equal(got, ids[ref_order[:, :9]])
    np.testing.assert_array_equal(loaded.get_labels(got), labels[ref_order[:, :9]])
    loaded.add(db[:2], ids=[1, 3], labels=labels[:2])
    assert len(loaded) == 302 and loaded.ids[-2:].tolist() == [1, 3]


@pytest.mark.parametrize("damage", ["empty", "truncated"])
@pytest.mark.parametrize("which", ["index", "meta"])
def test_load_names_a_damaged_file(tmp_path, data, damage, which):
    db, _, labels = data
    path = HashIndex(16).add(db, labels=labels).save(tmp_path / "index.faiss")
    target = path if which == "index" else tmp_path / "index.faiss.meta.npz"
    content = target.read_bytes()
    target.write_bytes(b"" if damage == "empty" else content[: len(content) // 2])
    expected = {"empty": "is empty", "truncated": "truncated"}[damage]
    with pytest.raises(ValueError, match=rf"{target.name}.*{expected}") as err:
        HashIndex.load(path)
    assert str(target) in str(err.value)


def test_cli_search_names_a_truncated_meta_json(tmp_path, data, capsys):
    from pml_shrewd.cli import main

    db, _, labels = data
    HashIndex(16).add(db, labels=labels).save(tmp_path / "index.faiss")
    (tmp_path / "meta.json").write_text('{"model": "runs/x", "paths": ["a.jpg", ')
    assert main(["search", "--index", str(tmp_path), "q.jpg"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "meta.json") in err and "truncated" in err
