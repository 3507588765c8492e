"""Unseen / seen-class figures of a CIFAR-100 hold-out benchmark, from its saved codes.

    python recipes/unseen_from_codes.py benchmarks/results/cifar100-unseen --data-dir /tmp/data/cifar100

Scores every ``codes/*.npz`` of the folder the way ``benchmark_cifar.py --holdout-classes``
does (``RetrievalEvaluator.score`` with the hold-out classes and the superclass table; Barz &
Denzler's tree, mAHP@250), e.g. when a run stopped before writing its ``results.json``.
Writes ``unseen_from_codes.json`` beside the codes.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

CONFIGS = Path(__file__).resolve().parent / "configs"


def main(argv: list[str] | None = None) -> dict:
    from pml_shrewd.data.base import class_ids_of, read_class_groups, read_class_names
    from pml_shrewd.retrieval import unpack_codes
    from pml_shrewd.semantic_distances.factory import hierarchy_for_classes
    from pml_shrewd.training import RetrievalEvaluator

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", help="a benchmark's output folder (with codes/*.npz)")
    p.add_argument("--data-dir", required=True, help="the CIFAR-100 ImageFolder root (for the class names)")
    p.add_argument("--holdout-classes", default=str(CONFIGS / "cifar100-frozen" / "holdout-classes.txt"))
    p.add_argument("--class-groups", default=str(CONFIGS / "cifar100-frozen" / "superclasses.txt"))
    p.add_argument("--k", type=int, default=250)
    args = p.parse_args(argv)
    classes = sorted(os.listdir(Path(args.data_dir) / "train"))
    tree = hierarchy_for_classes(classes, CONFIGS / "hierarchies" / "cifar100_cifar.parent-child.txt")
    evaluator = RetrievalEvaluator(
        tree,
        k=args.k,
        holdout_labels=class_ids_of(read_class_names(args.holdout_classes), classes, args.holdout_classes),
        label_groups=read_class_groups(args.class_groups, classes),
    )
    out = {}
    for path in sorted(Path(args.results).glob("codes/*.npz")):
        f = np.load(path)
        bits = int(f["bits"])
        m = evaluator.score(
            unpack_codes(f["test_codes"], bits),
            unpack_codes(f["train_codes"], bits),
            f["test_labels"].astype(np.int64),
            f["train_labels"].astype(np.int64),
        )
        out[path.stem] = {k: v for k, v in m.items() if not isinstance(v, list)}
        print(
            path.stem, {k: round(v, 4) for k, v in out[path.stem].items() if isinstance(v, float)}, flush=True
        )
    (Path(args.results) / "unseen_from_codes.json").write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
