"""Forward+backward time and peak memory of SemanticDistanceLoss + EmpiricalKLRegularizer
against PML's ContrastiveLoss on the same inputs, measured in the same run.

    python benchmarks/bench_losses.py --batch-sizes 256 1024 --bits 64

Target (issue 2): at most 1.5x ContrastiveLoss's time at batch 256, and memory that
grows no worse than B^2.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import ContrastiveLoss

from pml_shrewd import EmpiricalKLRegularizer, SemanticDistanceLoss
from pml_shrewd.semantic_distances.base import SemanticDistance


class _RandomTable(SemanticDistance):
    def __init__(self, num_classes: int):
        t = torch.rand(num_classes, num_classes)
        self.table = ((t + t.T) / 2).fill_diagonal_(0)
        self.num_ids = num_classes

    def pairwise(self, a, b):
        return self.table[a][:, b]


def time_fwd_bwd(loss_fns: dict, z, y, repeats: int) -> dict:
    """Median forward+backward seconds of each loss, runs interleaved so that load from
    other processes hits every loss alike."""
    times = {name: [] for name in loss_fns}
    for step in range(repeats + 2):
        for name, loss_fn in loss_fns.items():
            zz = z.clone().requires_grad_()
            t0 = time.perf_counter()
            loss_fn(zz, y).backward()
            if step >= 2:  # the first two rounds warm up
                times[name].append(time.perf_counter() - t0)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=str, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    provider = _RandomTable(args.num_classes)
    ours = SemanticDistanceLoss(provider, embedding_regularizer=EmpiricalKLRegularizer())
    sim_only = SemanticDistanceLoss(provider)
    baseline = ContrastiveLoss(distance=LpDistance(p=1, normalize_embeddings=False))
    rows = []
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.bits} bits, median of {args.repeats}"
    )
    print(
        f"{'batch':>6} {'Contrastive ms':>15} {'L_sim ms':>9} {'L_sim+L_KL ms':>14} {'ratio':>6} {'peak MB ours':>13} {'peak MB PML':>12}"
    )
    for b in args.batch_sizes:
        z = torch.rand(b, args.bits)
        y = torch.randint(0, args.num_classes, (b,))
        t = time_fwd_bwd({"base": baseline, "sim": sim_only, "ours": ours}, z, y, args.repeats)
        t_base, t_sim, t_ours = t["base"], t["sim"], t["ours"]
        m_ours = peak_memory_bytes(ours, z, y)
        m_base = peak_memory_bytes(baseline, z, y)
        row = dict(
            batch=b,
            bits=args.bits,
            contrastive_ms=1e3 * t_base,
            sim_ms=1e3 * t_sim,
            sim_kl_ms=1e3 * t_ours,
            ratio=t_ours / t_base,
            peak_bytes_ours=m_ours,
            peak_bytes_contrastive=m_base,
        )
        rows.append(row)
        print(
            f"{b:>6} {row['contrastive_ms']:>15.2f} {row['sim_ms']:>9.2f} {row['sim_kl_ms']:>14.2f} "
            f"{row['ratio']:>6.2f} {m_ours / 2**20:>13.1f} {m_base / 2**20:>12.1f}"
        )
    if len(rows) >= 2:
        b0, b1 = rows[0], rows[-1]
        growth = b1["peak_bytes_ours"] / b0["peak_bytes_ours"]
        quad = (b1["batch"] / b0["batch"]) ** 2
        print(f"memory growth {b0['batch']}->{b1['batch']}: x{growth:.1f} (B^2 would be x{quad:.1f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
