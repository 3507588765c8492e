"""Recipe: the paper's table-1 ablation end to end (L_cls, L_sim, L_KL + L_cls, SHREWD, SHRED).

Trains every variant with the CIFAR-100 recipe (``configs/cifar100_shrewd.json``: ResNet-18,
small-image stem, AdamW, paper losses), the same settings and seed for each, then writes
``ablation.json`` and ``table.md`` (binary and continuous mAHP@k, mAP, the binarisation
drop, bit balance, the paper's orderings) to ``--out``. Flags after ``--`` go to every
``pml-shrewd train`` run unchanged. Variants run ``--parallel`` at a time as separate
processes: on one GPU, several small CIFAR runs side by side keep it busier than one.
``--variants`` also takes PML's own losses on class labels (``contrastive``, ``triplet``,
``multisimilarity``: :func:`pml_shrewd.losses.pml_baseline_loss`) as baselines::

    python recipes/cifar100_ablation.py --data ~/data/cifar --out runs/ablation -- --epochs 30
    python recipes/cifar100_ablation.py --data /tmp/data/cifar100 --parallel 5 -- \\
        --dataset folder --hierarchy-file cifar100_cifar.parent-child.txt --num-workers 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from pml_shrewd.benchmarking import check_claims
from pml_shrewd.losses import PML_BASELINES as PML_VARIANTS
from pml_shrewd.losses import VARIANTS as TABLE

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "cifar100_shrewd.json")
VARIANTS = ("cls", "sim", "kl_cls", "shrewd", "shred")  # the paper's table 1, the default
# The row names of every table (pml_shrewd.losses.VARIANTS), so the CPU benchmark's and this read the same.
NAMES = {key: variant.name for key, variant in TABLE.items()}


def run_variants(variants, data: str, out: str, parallel: int, train_args: list[str]) -> dict[str, float]:
    """Train each variant in its own ``pml-shrewd train`` process, ``parallel`` at a time; wall seconds each.

    A failing variant stops the others (no orphaned GPU jobs) and raises, naming its log.
    """
    pending, running, seconds = list(variants), {}, {}
    try:
        while pending or running:
            while pending and len(running) < parallel:
                variant = pending.pop(0)
                run_dir = os.path.join(out, variant)
                os.makedirs(run_dir, exist_ok=True)
                cmd = [sys.executable, "-m", "pml_shrewd.cli", "train", "--config", CONFIG, "--data", data]
                cmd += ["--variant", variant, "--output-dir", run_dir, *train_args]
                log = open(os.path.join(run_dir, "train.log"), "w")
                running[variant] = (
                    subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT),
                    log,
                    time.time(),
                )
                print(f"started {variant}: {' '.join(cmd)}", flush=True)
            time.sleep(2)
            for variant, (proc, log, started) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[variant]
                seconds[variant] = round(time.time() - started, 1)
                if proc.returncode != 0:
                    log_path = os.path.join(out, variant, "train.log")
                    raise RuntimeError(f"variant {variant!r} failed (exit {proc.returncode}); see {log_path}")
                print(f"finished {variant} in {seconds[variant]:.0f} s", flush=True)
    finally:
        for proc, log, _ in running.values():
            proc.terminate()
            proc.wait()
            log.close()
    return seconds


def summarise(out: str, variants, seconds: dict[str, float], k: int) -> dict:
    """Collect each run's ``metrics.json`` into one table and check the paper's claims
    (:func:`pml_shrewd.benchmarking.check_claims`, the CPU benchmark's checker)."""
    rows = {}
    for variant in variants:
        with open(os.path.join(out, variant, "metrics.json")) as f:
            m = json.load(f)
        if m.get("k") != k:  # evaluation caps k at the database size
            raise KeyError(
                f"{variant}: metrics.json has mAHP@k for k={m.get('k')}, not {k}; is the database smaller?"
            )
        rows[variant] = {
            "name": NAMES[variant],
            "variant": variant,
            "mAHP@k": m["mAHP@k"],
            "mAHP@k_continuous": m["mAHP@k_continuous"],
            "drop": m["mAHP@k_continuous"] - m["mAHP@k"],
            "mAP": m["mAP"],
            "mAP_continuous": m["mAP_continuous"],
            "bit_balance": m["bit_balance"],
            "quantization_error": m["quantization_error"],
            "epochs": m["epochs_completed"],
            "wall_seconds": seconds.get(variant),
        }
    claims = check_claims({r["name"]: r for r in rows.values()})
    return {
        "k": k,
        "rows": rows,
        "checks": {claim: c["holds"] for claim, c in claims.items()},
        "claims": claims,
    }


def markdown(summary: dict) -> str:
    k = summary["k"]
    lines = [
        f"| variant | mAHP@{k} | continuous | drop | mAP | bit balance | epochs | wall s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in summary["rows"].values():
        lines.append(
            f"| {r['name']} | {r['mAHP@k']:.4f} | {r['mAHP@k_continuous']:.4f} | {r['drop']:+.4f} | "
            f"{r['mAP']:.4f} | {r['bit_balance']:.3f} | {r['epochs']} | {r['wall_seconds']} |"
        )
    lines.append("")
    lines += [
        f"- {name}: {'holds' if c['holds'] else 'fails'} ({c['detail']})"
        for name, c in summary["claims"].items()
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="CIFAR-100 root (torchvision or JPEG ImageFolder layout)")
    p.add_argument("--out", default="runs/cifar100_ablation")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=[*VARIANTS, *PML_VARIANTS])
    p.add_argument("--parallel", type=int, default=1, help="variants trained at the same time")
    p.add_argument("--k", type=int, default=250, help="k of mAHP@k (the runs' --hp-k)")
    args = p.parse_args(own)
    if args.parallel < 1:
        p.error("--parallel must be >= 1")
    start = time.time()
    seconds = run_variants(
        args.variants, args.data, args.out, args.parallel, [*train_args, "--hp-k", str(args.k)]
    )
    summary = summarise(args.out, args.variants, seconds, args.k)
    summary.update(train_args=train_args, wall_seconds=round(time.time() - start, 1))
    with open(os.path.join(args.out, "ablation.json"), "w") as f:
        json.dump(summary, f, indent=2)
    table = markdown(summary)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
