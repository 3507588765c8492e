"""How far can a text hash head get on a caption benchmark's image codes? (issue 16)

    python recipes/text_head_ceiling.py benchmarks/results/flickr8k/codes/SHREWD__L_sim___L_KL.npz \\
        --captions /tmp/flickr8k/captions.csv --out benchmarks/results/flickr8k/text_head_ceiling.json

The held-out captions (3-4) of the test images query the test images' saved codes, as in
``benchmark_captions.py`` (:func:`pml_shrewd.benchmarking.text_queries.text_to_image_rows`):
the text encoder trained on the train images' captions (the benchmark's row), the same encoder
fit on the *query* images' own training captions (0-2), which sees what the nearest-caption
route indexes (an upper reference, not a deployable model), the nearest-caption route, and how
distinct the test images' codes are (the exact own code ranks first unless codes collide).

``--features-config`` (a benchmark row's TrainConfig file) adds a ceiling without any hashing:
ridge regression from the row's standardised image features onto the training captions' mean
embedding (fitted on the train images), the held-out caption ranking the test images by the
cosine of its embedding with their predictions. Its alpha is chosen on the dev images (their
held-out captions querying the 1,000 dev images); the test images are scored once.
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
    p.add_argument("--features-config", help="a row's TrainConfig file: add the linear read-out ceiling")
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
    if args.features_config:
        out.update(linear_readout_rows(args.features_config, args.captions, data))
    out["seconds"] = time.time() - started
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1)
    print(json.dumps(out, indent=1))
    return out


def linear_readout_rows(config_file: str, captions: str, data, alphas=(1e2, 1e3, 1e4, 3e4)) -> dict:
    """Continuous text-to-image ranking through ridge predictions of caption space (no hashing):
    alpha chosen by dev R@10, then the test split once."""
    from sklearn.linear_model import Ridge

    from pml_shrewd.models.hash_head import feature_statistics
    from pml_shrewd.semantic_distances import default_sentence_model, encode_sentences
    from pml_shrewd.training import TrainConfig
    from pml_shrewd.training.builders import build_run
    from pml_shrewd.training.text_encoder import caption_training_pairs

    model = default_sentence_model()
    # The training target of every image: the normalised mean embedding of its training captions.
    targets = caption_training_pairs(data.caption_sets, np.arange(len(data.caption_sets)))[0].numpy()

    def split(query_split: str):
        run = build_run(TrainConfig.load(config_file, data_path=captions, query_split=query_split))
        fit_set, queries = run["train_set"], run["test_set"]
        x_fit, x_q = fit_set.features.numpy(), queries.features.numpy()
        mean, std = feature_statistics(x_fit)
        ids_fit, ids_q = np.asarray(fit_set.targets), np.asarray(queries.targets)
        texts = [(pos, t) for pos, i in enumerate(ids_q) for t in data.held_out_sets[i]]
        emb = encode_sentences([t for _, t in texts], model, show_progress_bar=False).numpy()
        return (x_fit - mean) / std, (x_q - mean) / std, ids_fit, emb, np.array([p for p, _ in texts])

    def recall(alpha: float, x_fit, x_q, ids_fit, emb, own) -> dict:
        fit = Ridge(alpha=alpha).fit(x_fit, targets[ids_fit])
        pred = fit.predict(x_q)
        scores = emb @ (pred / np.linalg.norm(pred, axis=1, keepdims=True)).T
        rank = (scores > scores[np.arange(len(own)), own][:, None]).sum(1)
        return {
            **{f"R@{k}": float((rank < k).mean()) for k in (1, 5, 10)},
            "median rank": float(np.median(rank + 1)),
        }

    dev = split("dev")
    on_dev = {a: recall(a, *dev) for a in alphas}
    best = max(alphas, key=lambda a: on_dev[a]["R@10"])
    test = recall(best, *split("test"))
    name = "ridge onto caption space, cosine (no hashing; alpha chosen on dev)"
    return {name: {**test, "alpha": best, "dev R@10 by alpha": {str(a): on_dev[a]["R@10"] for a in alphas}}}


if __name__ == "__main__":
    main()
