"""Benchmark of retrieval and evaluation at CIFAR-100 size (10,000 queries x 50,000 database, 64 bits).

Prints:
- the full evaluation (mAP over the whole Hamming ranking + mAHP@250) vs a straightforward
  numpy implementation (one query at a time: xor popcount, stable argsort, loops), run on a
  subset of queries and extrapolated linearly, with the ratio; the baseline's values are
  checked against ours on that subset;
- top-250 Hamming search: HashIndex (flat) vs a raw faiss ``IndexBinaryFlat.search`` call;
- recall@10 of the approximate indexes (hnsw, ivf, multihash) against flat;
- memory per million codes of each index type.

Synthetic data: 100 classes in 20 super-classes (CIFAR-100-like two-level hierarchy:
d = 0 same class, 0.5 same super-class, 1 otherwise); each class has a random prototype
code and items flip each bit with probability ``--flip``.

Usage: python benchmarks/bench_retrieval.py [--num-queries 10000 --num-db 50000 --bits 64]
"""

from __future__ import annotations

import argparse
import os
import time

import faiss
import numpy as np

from pml_shrewd.retrieval import HashIndex, evaluate_codes, mahp_at_k, mean_average_precision, pack_codes
from pml_shrewd.retrieval.metrics import _ahp, _rank_queries


def make_data(args):
    rng = np.random.default_rng(args.seed)
    protos = rng.integers(0, 2, (args.classes, args.bits)).astype(np.uint8)

    def sample(n):
        labels = rng.integers(0, args.classes, n)
        flips = (rng.random((n, args.bits)) < args.flip).astype(np.uint8)
        return protos[labels] ^ flips, labels

    qb, ql = sample(args.num_queries)
    db, dl = sample(args.num_db)
    sup = np.arange(args.classes) % args.superclasses
    dmat = np.where(sup[:, None] == sup[None, :], 0.5, 1.0)
    np.fill_diagonal(dmat, 0.0)
    return qb, db, ql, dl, dmat


def numpy_baseline(qb, db, ql, dl, dmat, k):
    """Straightforward numpy: per query, popcount of xor, stable argsort, AP and HP@1..k."""
    qp, dp = np.packbits(qb, axis=1), np.packbits(db, axis=1)
    sims_all = 1.0 - dmat
    aps, ahps = [], []
    for i in range(len(qp)):
        dist = np.unpackbits(np.bitwise_xor(qp[i], dp), axis=1).sum(axis=1)
        order = np.argsort(dist, kind="stable")
        rel = dl[order] == ql[i]
        hits = np.cumsum(rel)
        ranks = np.nonzero(rel)[0] + 1
        aps.append(float(np.mean(hits[rel] / ranks)) if len(ranks) else 0.0)
        sims = sims_all[ql[i], dl[order[:k]]]
        best = np.sort(sims_all[ql[i], dl])[::-1][:k]
        cb = np.cumsum(best)
        hp = np.divide(np.cumsum(sims), cb, out=np.zeros(k), where=cb > 0)
        ahps.append(float(np.trapezoid(hp, dx=1.0 / k)))
    return float(np.mean(aps)), float(np.mean(ahps))


def timed(fn, repeat=1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-queries", type=int, default=10_000)
    p.add_argument("--num-db", type=int, default=50_000)
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--superclasses", type=int, default=20)
    p.add_argument("--flip", type=float, default=0.25, help="bit-flip probability around class prototypes")
    p.add_argument("--k", type=int, default=250, help="mAHP@k and top-k search")
    p.add_argument("--baseline-queries", type=int, default=300, help="queries for the numpy baseline")
    p.add_argument("--recall-queries", type=int, default=2000, help="queries for approximate-index recall")
    p.add_argument("--search-repeats", type=int, default=3)
    p.add_argument("--skip-evaluate-codes", action="store_true", help="skip timing evaluate_codes")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    print(
        f"cores: {os.cpu_count()}, faiss threads: {faiss.omp_get_max_threads()} (shared machine: times vary)"
    )
    qb, db, ql, dl, dmat = make_data(args)
    nq, n, k = args.num_queries, args.num_db, args.k
    print(f"data: {nq} queries x {n} database, {args.bits} bits, {args.classes} classes, k={k}")

    # --- full evaluation ------------------------------------------------------------------
    t_ours, res = timed(lambda: _rank_queries(qb, db, ql, dl, full_ap=True, hp_k=k, semantic_distance=dmat))
    m_ap, m_ahp = float(res["ap"].mean()), float(_ahp(res["hp"]).mean())
    t_pub, _ = timed(
        lambda: (
            mean_average_precision(qb, db, ql, dl),
            mahp_at_k(qb, db, ql, dl, semantic_distance=dmat, k=k),
        )
    )
    nb = min(args.baseline_queries, nq)
    t_base, (b_ap, b_ahp) = timed(lambda: numpy_baseline(qb[:nb], db, ql[:nb], dl, dmat, k))
    t_base_full = t_base * nq / nb
    sub = _rank_queries(qb[:nb], db, ql[:nb], dl, full_ap=True, hp_k=k, semantic_distance=dmat)
    agree = abs(sub["ap"].mean() - b_ap) < 1e-9 and abs(_ahp(sub["hp"]).mean() - b_ahp) < 1e-9
    print(f"\n== full evaluation: mAP (whole ranking) + mAHP@{k}, Hamming ranking ==")
    print(f"ours (one pass):            {t_ours:8.2f} s   mAP={m_ap:.4f}  mAHP@{k}={m_ahp:.4f}")
    print(f"ours (two public calls):    {t_pub:8.2f} s   mean_average_precision + mahp_at_k")
    print(
        f"numpy baseline:             {t_base_full:8.2f} s   (measured {t_base:.2f} s on {nb} queries, "
        f"extrapolated linearly to {nq})"
    )
    print(f"speed-up vs numpy:          {t_base_full / t_ours:8.1f} x   values agree on the subset: {agree}")

    if not args.skip_evaluate_codes:
        # Continuous codes around the binary ones: what a trainer hands to evaluate_codes.
        rng = np.random.default_rng(args.seed + 1)
        qz = np.clip(qb * 0.7 + 0.15 + rng.normal(0, 0.2, qb.shape), 0, 1).astype(np.float32)
        dz = np.clip(db * 0.7 + 0.15 + rng.normal(0, 0.2, db.shape), 0, 1).astype(np.float32)
        t_ev, ev = timed(lambda: evaluate_codes(qz, dz, ql, dl, semantic_distance=dmat, k=k))
        print(
            f"evaluate_codes (Hamming + continuous L1, all metrics): {t_ev:.2f} s   "
            f"mAHP@{ev['k']}={ev['mAHP@k']:.4f} vs continuous {ev['mAHP@k_continuous']:.4f}"
        )

    # --- top-k search -----------------------------------------------------------------------
    qp, dp = pack_codes(qb), pack_codes(db)
    index = HashIndex(args.bits).add_packed(dp)
    raw = faiss.IndexBinaryFlat(args.bits)
    raw.add(dp)
    raw_mc = faiss.IndexBinaryFlat(args.bits)
    raw_mc.use_heap = False  # the counting search HashIndex uses (ties in insertion order)
    raw_mc.add(dp)
    times = {"ours": [], "ours_unpacked": [], "raw": [], "raw_mc": []}
    for _ in range(args.search_repeats):  # interleaved, best of: the CPU is shared
        for name, fn in (
            ("ours", lambda: index.search_packed(qp, k)),
            ("ours_unpacked", lambda: index.search(qb, k)),
            ("raw", lambda: raw.search(qp, k)),
            ("raw_mc", lambda: raw_mc.search(qp, k)),
        ):
            t, out = timed(fn)
            times[name].append(t)
            if name == "ours":
                d_idx = out[0]
            if name == "raw":
                d_raw = out[0]
    t_idx, t_raw, t_mc = min(times["ours"]), min(times["raw"]), min(times["raw_mc"])
    print(f"\n== top-{k} Hamming search, {nq} queries (best of {args.search_repeats}, interleaved) ==")
    print(f"HashIndex.search_packed:           {t_idx:8.3f} s   ({nq / t_idx:,.0f} queries/s)")
    print(f"HashIndex.search (0/1 in):         {min(times['ours_unpacked']):8.3f} s   (includes packing)")
    print(f"raw faiss IndexBinaryFlat:         {t_raw:8.3f} s   ratio ours/raw = {t_idx / t_raw:.2f}")
    print(f"raw faiss, use_heap=False:         {t_mc:8.3f} s   ratio ours/raw = {t_idx / t_mc:.2f}")
    print(f"same distances as raw faiss: {bool((d_idx == d_raw).all())}")

    # --- approximate indexes ----------------------------------------------------------------
    nr = min(args.recall_queries, nq)
    _, exact = index.search_packed(qp[:nr], 10)
    exact_d, _ = index.search_packed(qp[:nr], 10)
    print(f"\n== approximate indexes: recall@10 vs flat ({nr} queries) ==")
    print("id recall = |approx top-10 ∩ flat top-10| / 10 (ties make it pessimistic);")
    print("distance recall = share of returned items within the flat 10th distance")
    rows = [("flat", index, 0.0)]
    for kind, opts in (("hnsw", {}), ("ivf", {"nprobe": 8}), ("multihash", {})):
        t_build = time.perf_counter()
        approx = HashIndex(args.bits, kind, **opts).add_packed(dp)
        t_build = time.perf_counter() - t_build
        t_s, (ad, ai) = timed(lambda approx=approx: approx.search_packed(qp[:nr], 10))
        id_recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(ai, exact, strict=True)])
        dist_recall = np.mean((ai >= 0) & (ad <= exact_d[:, -1:]))
        print(
            f"{kind:10s} build {t_build:6.2f} s  search {t_s:6.3f} s  id recall {id_recall:.3f}  "
            f"distance recall {dist_recall:.3f}  options {approx.options if kind == 'ivf' else ''}"
        )
        rows.append((kind, approx, t_build))

    print("\n== memory per million codes (serialised index with its faiss id map: int64 ids) ==")
    print(f"raw codes: {args.bits // 8 * 1_000_000:,} bytes")
    for kind, idx, _ in rows:
        print(f"{kind:10s} {idx.memory_bytes() / len(idx) * 1_000_000:14,.0f} bytes")


if __name__ == "__main__":
    main()
