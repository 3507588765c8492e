"""How far can a text hash head get on a caption benchmark's image codes? (issue 16)

    python recipes/text_head_ceiling.py benchmarks/results/flickr8k/codes/SHREWD__L_sim___L_KL.npz \\
        --captions /tmp/flickr8k/captions.csv --out benchmarks/results/flickr8k/text_head_ceiling.json

The held-out captions (3-4) of the test images query the test images' saved codes, as in
``benchmark_captions.py``. Rows: the library's text encoder trained on the train images'
captions (the benchmark's row), the same encoder trained on the *query* images' own training
captions (0-2) against their codes, which sees what the nearest-caption route indexes (an
upper reference, not a deployable model), the nearest-caption route, and how distinct the test
images' codes are (the exact own code ranks first for every query unless codes collide).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    import torch

    from pml_shrewd.data import CaptionedImages
    from pml_shrewd.retrieval import caption_relevance, unpack_codes
    from pml_shrewd.semantic_distances import default_sentence_model, encode_sentences
    from pml_shrewd.training import text_to_image_figures, train_text_encoder
    from pml_shrewd.training.text_encoder import caption_training_pairs

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("codes", help="a caption benchmark's codes/*.npz (image ids as labels)")
    p.add_argument("--captions", required=True, help="captions.csv (splits.csv beside it)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--out", required=True, help="JSON file to write")
    args = p.parse_args(argv)

    f = np.load(args.codes)
    bits = int(f["bits"])
    train_codes, test_codes = unpack_codes(f["train_codes"], bits), unpack_codes(f["test_codes"], bits)
    train_ids, test_ids = f["train_labels"].astype(np.int64), f["test_labels"].astype(np.int64)
    data = CaptionedImages(args.captions, train_captions=[0, 1, 2], held_out_captions=[3, 4])
    model = default_sentence_model()
    queries = [(pos, text) for pos, i in enumerate(test_ids) for text in data.held_out_sets[i]]
    own = np.array([pos for pos, _ in queries])
    query_emb = encode_sentences([t for _, t in queries], model, show_progress_bar=False)
    common = dict(relevance=caption_relevance(data.held_out_sets, model=model), image_ids=test_ids, k=100)

    binary = np.asarray(test_codes) > 0.5
    d = (binary[:, None, :] != binary[None, :, :]).sum(-1)
    np.fill_diagonal(d, bits + 1)
    out: dict = dict(codes=args.codes, bits=bits, steps=args.steps)
    out["test images whose code another test image shares"] = float((d.min(1) == 0).mean())
    out["median Hamming distance to the nearest other test image"] = float(np.median(d.min(1)))
    for name, ids, codes in (
        ("text encoder, trained on the train images", train_ids, train_codes),
        ("text encoder, trained on the query images' own training captions", test_ids, test_codes),
    ):
        started = time.time()
        targets, captions, owner = caption_training_pairs(data.caption_sets, ids, model)
        encoder = train_text_encoder(codes, targets, captions, owner, sentence_model=model, steps=args.steps)
        with torch.no_grad():
            text_codes = encoder(query_emb).numpy()
        out[name] = {
            **text_to_image_figures(text_codes, own, test_codes, **common),
            "seconds": time.time() - started,
        }
    indexed = encode_sentences([data.caption_sets[i][0] for i in test_ids], model, show_progress_bar=False)
    nearest = (query_emb @ indexed.T).argmax(dim=1).numpy()
    out["nearest caption"] = text_to_image_figures(test_codes[nearest], own, test_codes, **common)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
