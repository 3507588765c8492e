"""How far can a text hash head get on a caption benchmark's image codes? (issue 16)

    python recipes/text_head_ceiling.py benchmarks/results/flickr8k/codes/SHREWD__L_sim___L_KL.npz \\
        --captions /tmp/flickr8k/captions.csv --out benchmarks/results/flickr8k/text_head_ceiling.json

The held-out captions (3-4) of the test images query the test images' saved codes, as in
``benchmark_captions.py`` (:func:`pml_shrewd.benchmarking.text_queries.text_to_image_rows`):
the text encoder trained on the train images' captions (the benchmark's row), the same encoder
fit on the *query* images' own training captions (0-2), which sees what the nearest-caption
route indexes (an upper reference, not a deployable model), the nearest-caption route, and how
distinct the test images' codes are (the exact own code ranks first unless codes collide).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    from pml_shrewd.benchmarking.text_queries import text_to_image_rows
    from pml_shrewd.data import CaptionedImages
    from pml_shrewd.retrieval import unpack_codes

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("codes", help="a caption benchmark's codes/*.npz (image ids as labels)")
    p.add_argument("--captions", required=True, help="captions.csv (splits.csv beside it)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--out", required=True, help="JSON file to write")
    args = p.parse_args(argv)

    f = np.load(args.codes)
    bits = int(f["bits"])
    binary = unpack_codes(f["test_codes"], bits) > 0.5
    d = (binary[:, None, :] != binary[None, :, :]).sum(-1)
    np.fill_diagonal(d, bits + 1)
    out: dict = dict(codes=args.codes, bits=bits, steps=args.steps)
    out["test images whose code another test image shares"] = float((d.min(1) == 0).mean())
    out["median Hamming distance to the nearest other test image"] = float(np.median(d.min(1)))
    data = CaptionedImages(args.captions, train_captions=[0, 1, 2], held_out_captions=[3, 4])
    started = time.time()
    out.update(text_to_image_rows(args.codes, data, steps=args.steps, fit_on_queries=True))
    out["seconds"] = time.time() - started
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
