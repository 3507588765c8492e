"""Forward+backward time and peak memory of SemanticDistanceLoss (L_sim, alone and with
EmpiricalKLRegularizer as L_KL) against PML's ContrastiveLoss on the same inputs, in one run.

    python benchmarks/bench_losses.py --batch-sizes 256 1024 4096 --bits 64 --json out.json

Two baselines, both timed in the same interleaved rounds:

* ``ContrastiveLoss()``: PML's default, Euclidean distance by a matrix product (the fastest);
* ``ContrastiveLoss(distance=LpDistance(p=1, normalize_embeddings=False))``: the same Manhattan
  distance as ours, through ``torch.cdist(p=1)``.

Also timed: L_sim through ``LpDistance(p=1, normalize_embeddings=False)``, its default before
:class:`~pml_shrewd.distances.ManhattanDistance` (same values and gradients).

Targets: at most 1.5x the default ContrastiveLoss() at batch 256, 1024 and 4096 (issue 19;
issue 2 asked 1.5x the same-distance one at 256), and memory that grows no worse than B^2.
Timings are medians of interleaved repeats; the load average is recorded with each batch
size, since a busy 2-core machine stretches every figure. The paired ratios (each round's
ratio, then the median over rounds) are steadier than ratios of medians when the load changes
during a run.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import ContrastiveLoss

from pml_shrewd import EmpiricalKLRegularizer, MatrixDistance, SemanticDistanceLoss


def random_provider(num_classes: int) -> MatrixDistance:
    """A ``MatrixDistance`` over a random symmetric class-by-class table (zero diagonal)."""
    t = torch.rand(num_classes, num_classes, generator=torch.Generator().manual_seed(0))
    return MatrixDistance(((t + t.T) / 2).fill_diagonal_(0))


def median(values):
    return sorted(values)[len(values) // 2]


def time_fwd_bwd(loss_fns: dict, z, y, repeats: int) -> tuple[dict, dict, dict]:
    """Median forward+backward seconds of each loss, wall clock and process CPU time, runs
    interleaved so that load from other processes hits every loss alike. With one thread
    the CPU time hardly depends on the load (it counts no time spent waiting for a core).

    Also returned: the wall-clock times of every round, for paired ratios (each round's ratio,
    then their median), which cancel load that changes from one round to the next."""
    wall = {name: [] for name in loss_fns}
    cpu = {name: [] for name in loss_fns}
    for step in range(repeats + 2):
        for name, loss_fn in loss_fns.items():
            zz = z.clone().requires_grad_()
            c0, t0 = time.process_time(), time.perf_counter()
            loss_fn(zz, y).backward()
            t1, c1 = time.perf_counter(), time.process_time()
            if step >= 2:  # the first two rounds warm up
                wall[name].append(t1 - t0)
                cpu[name].append(c1 - c0)
    return (
        {name: median(t) for name, t in wall.items()},
        {name: median(t) for name, t in cpu.items()},
        wall,
    )


def paired_ratio(rounds: dict, num: str, den: str) -> float:
    """Median over the interleaved rounds of ``num``'s time over ``den``'s in the same round."""
    return median([a / b for a, b in zip(rounds[num], rounds[den])])


def peak_memory_bytes(loss_fn, z, y) -> int:
    """Peak bytes of tensors allocated by one forward+backward (CPU allocator via the profiler)."""
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
    ) as prof:
        zz = z.clone().requires_grad_()
        loss_fn(zz, y).backward()
    # Running sum of allocations/frees in event order gives the peak live bytes.
    events = sorted((e for e in prof.events() if e.cpu_memory_usage != 0), key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.cpu_memory_usage
        peak = max(peak, live)
    return peak


def _l1():
    return LpDistance(p=1, normalize_embeddings=False)


# name: (column header, build(provider))
LOSSES = {
    "pml": ("Contrastive() ms", lambda provider: ContrastiveLoss()),
    "pml_l1": ("Contrastive(L1) ms", lambda provider: ContrastiveLoss(distance=_l1())),
    "sim_cdist": ("L_sim cdist ms", lambda provider: SemanticDistanceLoss(provider, distance=_l1())),
    "sim": ("L_sim ms", lambda provider: SemanticDistanceLoss(provider)),
    "ours": (
        "L_sim+L_KL ms",
        lambda provider: SemanticDistanceLoss(provider, embedding_regularizer=EmpiricalKLRegularizer()),
    ),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--json", type=str, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    provider = random_provider(args.num_classes)
    loss_fns = {name: build(provider) for name, (_, build) in LOSSES.items()}
    rows = []
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.bits} bits, "
        f"median of {args.repeats} interleaved repeats"
    )
    header = f"{'batch':>6} " + " ".join(f"{h:>{max(len(h), 9)}}" for h, _ in LOSSES.values())
    header += f" {'sim/()':>7} {'ours/()':>7} {'sim/L1':>7} {'ours/L1':>7} {'load':>5}"
    if not args.no_memory:
        header += f" {'MB ours':>8} {'MB sim':>7} {'MB ()':>7} {'MB L1':>7}"
    print(header)
    for b in args.batch_sizes:
        z = torch.rand(b, args.bits)
        y = torch.randint(0, args.num_classes, (b,))
        load_before = os.getloadavg()[0]
        t, cpu, rounds = time_fwd_bwd(loss_fns, z, y, args.repeats)
        load_after = os.getloadavg()[0]
        row = dict(
            batch=b,
            bits=args.bits,
            threads=torch.get_num_threads(),
            repeats=args.repeats,
            # the keys of earlier versions: "contrastive" is the same-distance ContrastiveLoss(L1)
            contrastive_ms=1e3 * t["pml_l1"],
            sim_ms=1e3 * t["sim"],
            sim_kl_ms=1e3 * t["ours"],
            ratio=t["ours"] / t["pml_l1"],
            contrastive_default_ms=1e3 * t["pml"],
            sim_cdist_ms=1e3 * t["sim_cdist"],
            ratio_sim_vs_default=t["sim"] / t["pml"],
            ratio_sim_kl_vs_default=t["ours"] / t["pml"],
            ratio_sim_vs_l1=t["sim"] / t["pml_l1"],
            ratio_sim_kl_vs_l1=t["ours"] / t["pml_l1"],
            load_avg_1min=[load_before, load_after],
            cpu_ms={name: 1e3 * c for name, c in cpu.items()},
            cpu_ratio_sim_vs_default=cpu["sim"] / cpu["pml"],
            cpu_ratio_sim_kl_vs_default=cpu["ours"] / cpu["pml"],
            cpu_ratio_sim_vs_l1=cpu["sim"] / cpu["pml_l1"],
            cpu_ratio_sim_kl_vs_l1=cpu["ours"] / cpu["pml_l1"],
            paired_ratio_sim_vs_default=paired_ratio(rounds, "sim", "pml"),
            paired_ratio_sim_kl_vs_default=paired_ratio(rounds, "ours", "pml"),
            paired_ratio_sim_vs_l1=paired_ratio(rounds, "sim", "pml_l1"),
            paired_ratio_sim_kl_vs_l1=paired_ratio(rounds, "ours", "pml_l1"),
        )
        line = f"{b:>6} " + " ".join(
            f"{1e3 * t[name]:>{max(len(h), 9)}.2f}" for name, (h, _) in LOSSES.items()
        )
        line += (
            f" {row['ratio_sim_vs_default']:>7.2f} {row['ratio_sim_kl_vs_default']:>7.2f}"
            f" {row['ratio_sim_vs_l1']:>7.2f} {row['ratio_sim_kl_vs_l1']:>7.2f} {load_after:>5.1f}"
        )
        if not args.no_memory:
            mem = {name: peak_memory_bytes(loss_fns[name], z, y) for name in ("ours", "sim", "pml", "pml_l1")}
            row.update(
                peak_bytes_ours=mem["ours"],
                peak_bytes_sim=mem["sim"],
                peak_bytes_contrastive=mem["pml_l1"],
                peak_bytes_contrastive_default=mem["pml"],
            )
            line += "".join(
                f" {mem[n] / 2**20:>{w}.1f}" for n, w in (("ours", 8), ("sim", 7), ("pml", 7), ("pml_l1", 7))
            )
        rows.append(row)
        print(line, flush=True)
    print("process CPU time, the same runs (ms; ratios as above):")
    for row in rows:
        c = row["cpu_ms"]
        print(
            f"{row['batch']:>6} "
            + " ".join(f"{c[name]:>{max(len(h), 9)}.2f}" for name, (h, _) in LOSSES.items())
            + f" {row['cpu_ratio_sim_vs_default']:>7.2f} {row['cpu_ratio_sim_kl_vs_default']:>7.2f}"
            f" {row['cpu_ratio_sim_vs_l1']:>7.2f} {row['cpu_ratio_sim_kl_vs_l1']:>7.2f}"
        )
    print("paired wall-clock ratios (median over rounds of each round's ratio):")
    for row in rows:
        print(
            f"{row['batch']:>6} sim/() {row['paired_ratio_sim_vs_default']:.2f}"
            f"  ours/() {row['paired_ratio_sim_kl_vs_default']:.2f}"
            f"  sim/L1 {row['paired_ratio_sim_vs_l1']:.2f}  ours/L1 {row['paired_ratio_sim_kl_vs_l1']:.2f}"
        )
    if len(rows) >= 2 and not args.no_memory:
        b0, b1 = rows[0], rows[-1]
        growth = b1["peak_bytes_ours"] / b0["peak_bytes_ours"]
        quad = (b1["batch"] / b0["batch"]) ** 2
        print(f"memory growth {b0['batch']}->{b1['batch']}: x{growth:.1f} (B^2 would be x{quad:.1f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
