"""Build a training run's objects from a :class:`TrainConfig` (timm-style: configs are plain data).

``build_run(config)`` gives the keyword arguments of :class:`~pml_shrewd.training.Trainer`:
the model, the loss, the data sets, the sampler, the evaluator and the callbacks. Each piece
has its own builder, so a benchmark or a notebook can build one piece differently and keep
the rest.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ..data import ClassBalancedEpochs, FeatureSamples, SampleView, ShuffledEpochs, build_datasets
from ..data.base import holdout_split, validation_split
from ..losses import build_objective, get_variant
from ..models import HashHead, HashingModel
from ..models.stages import BackboneTail, TailHashModel
from .config import TrainConfig


def build_model(config: TrainConfig) -> HashingModel:
    """The :class:`HashingModel` of ``config`` (seeded: the same initialisation for every variant)."""
    from accelerate.utils import set_seed

    from ..models.weights import resolve_pretrained_file

    set_seed(config.seed)
    kwargs: dict[str, Any] = {}
    if config.drop_rate:
        kwargs["drop_rate"] = config.drop_rate  # timm's dropout on the pooled features = the head's input
    if config.crop_pct is not None:
        kwargs["crop_pct"] = config.crop_pct
    return HashingModel(
        config.backbone,
        num_bits=config.num_bits,
        pretrained=config.pretrained,
        pretrained_file=resolve_pretrained_file(config.pretrained_file),
        small_images=config.small_images,
        image_size=config.image_size,
        hidden_dim=config.hidden_dim,
        batch_norm=config.batch_norm,
        standardize_features=config.standardize_features,
        **kwargs,
    )


def build_data(config: TrainConfig, model: HashingModel) -> tuple[SampleView, SampleView, SampleView]:
    """Train, test and database sets of images (the database: the train images, eval transform)."""
    train, test = build_datasets(
        config.dataset,
        config.data_path,
        model.transform(train=True),
        model.transform(train=False),
        download=config.download,
        test_fraction=config.test_fraction,
        seed=config.seed,
        max_train_samples=config.max_train_samples,
        max_test_samples=config.max_test_samples,
        caption_target=config.caption_target,
        train_captions=config.train_captions,
        held_out_captions=config.held_out_captions,
        query_split=config.query_split,
    )
    if config.validation_fraction:
        rest, val = validation_split(len(train), config.validation_fraction, config.seed)
        test = SampleView(train.base, [train.indices[i] for i in val], test.transform)
        train = SampleView(train.base, [train.indices[i] for i in rest], train.transform)
    database = SampleView(train.base, train.indices, test.transform)
    if config.holdout_classes:  # unseen-class protocol: the database and the queries keep every class
        if getattr(train, "captions", None) is not None:
            raise ValueError("holdout_classes needs class labels; captioned data has none")
        kept, _ = holdout_split(train.targets, train.classes, *_holdout_names(config))
        train = SampleView(train.base, [train.indices[i] for i in kept], train.transform)
    return train, test, database


def _holdout_names(config: TrainConfig) -> tuple[list[str], str]:
    from ..data.base import read_class_names

    return read_class_names(config.holdout_classes), f"holdout_classes {config.holdout_classes!r}"


def holdout_class_ids(config: TrainConfig, classes) -> list[int]:
    """The class ids of ``config.holdout_classes`` (sorted; ``[]`` without one); a ``ValueError``
    names the file and every name that is no class."""
    if not config.holdout_classes:
        return []
    return holdout_split([], classes, *_holdout_names(config))[1]


def holdout_features(config: TrainConfig, features: FeatureSamples) -> FeatureSamples:
    """The cached features the head trains on: without ``config.holdout_classes`` all of them (the
    same object), else those of the other classes."""
    if not config.holdout_classes:
        return features
    return features.select(holdout_split(features.targets, features.classes, *_holdout_names(config))[0])


def evaluation_groups(config: TrainConfig, classes) -> dict[str, Any]:
    """The :class:`RetrievalEvaluator` arguments of ``holdout_classes`` and ``class_groups``."""
    from ..data.base import read_class_groups

    return dict(
        holdout_labels=holdout_class_ids(config, classes) if config.holdout_classes else None,
        label_groups=read_class_groups(config.class_groups, classes) if config.class_groups else None,
    )


def build_feature_data(
    config: TrainConfig,
    model: HashingModel,
    train: SampleView,
    test: SampleView,
    database: SampleView,
    train_stages: int | None = None,
) -> tuple[FeatureSamples, FeatureSamples]:
    """Cached backbone features of the database (= train) and test images (eval transform):
    pooled features, or with ``train_stages`` (default ``config.train_stages``) the frozen
    trunk's activation maps."""
    from ..models.weights import resolve_pretrained_file
    from ..utils import cache_dir
    from .features import cached_features

    folder = cache_dir() / "features"
    weights = resolve_pretrained_file(config.pretrained_file)
    stages = config.train_stages if train_stages is None else train_stages
    if not config.validation_fraction:
        return (
            cached_features(model, database, folder, weights_file=weights, train_stages=stages),
            cached_features(model, test, folder, weights_file=weights, train_stages=stages),
        )
    # Validation queries come from the training split: one feature file for the whole split.
    whole = SampleView(database.base, sorted([*database.indices, *test.indices]), database.transform)
    features = cached_features(model, whole, folder, weights_file=weights, train_stages=stages)
    row = {name: i for i, name in enumerate(features.names)}  # unreadable images have no row
    parts = []
    for part in (database, test):
        names = [part.sample_name(i) for i in range(len(part))]
        parts.append(
            features.select([row[n] for n in names if n in row], skipped=[n for n in names if n not in row])
        )
    return tuple(parts)


def fresh_head(config: TrainConfig, in_features: int, train_features: torch.Tensor | None = None) -> HashHead:
    """A seeded :class:`HashHead` for cached features (its initialisation independent of the backbone's)."""
    torch.manual_seed(config.seed)
    head = HashHead(
        in_features,
        config.num_bits,
        hidden_dim=config.hidden_dim,
        batch_norm=config.batch_norm,
        drop_rate=config.drop_rate,
        standardize=config.standardize_features,
    )
    if config.standardize_features and train_features is not None:
        head.set_feature_statistics(train_features)
    return head


def fine_tuning_model(config: TrainConfig, model: HashingModel, train: FeatureSamples) -> TailHashModel:
    """Fine-tuning mode's trained module over cached trunk activations: the backbone's last
    ``config.train_stages`` stages (shared with ``model.backbone``, so ``model`` deploys what was
    trained) and a fresh head as ``model.head``, standardised with the untrained tail's features."""
    from .inference import encode_dataset

    tail = BackboneTail(model.backbone, config.train_stages)
    pooled = None
    if config.standardize_features:  # the statistics of the features the head starts from
        pooled, _, _ = encode_dataset(tail, train, batch_size=512, desc="tail features")
    model.head = fresh_head(config, model.feature_dim, pooled)
    return TailHashModel(tail, model.head, flip=config.flip_activations, fast=config.fast_tail)


def build_sampler(config: TrainConfig, train_set):
    """The epoch order: class-balanced batches with ``samples_per_class``, else a seeded shuffle."""
    if config.samples_per_class:
        if getattr(train_set, "captions", None) is not None:
            raise ValueError("samples_per_class needs class labels; captioned data has none")
        return ClassBalancedEpochs(train_set.targets, config.samples_per_class, seed=config.seed)
    return ShuffledEpochs(len(train_set), seed=config.seed)


def build_callbacks(config: TrainConfig, total_steps: int) -> list:
    """``KLWarmup`` when ``config.kl_warmup`` is set, ``CodeSharpening`` when ``code_sharpness > 1``."""
    from .callbacks import CodeSharpening, KLWarmup

    callbacks: list = []
    if config.kl_warmup and get_variant(config.variant).kl:
        callbacks.append(KLWarmup(config.lambda_kl, max(1, int(config.kl_warmup * total_steps))))
    if config.code_sharpness > 1.0:
        callbacks.append(CodeSharpening(config.code_sharpness, max(1, total_steps)))
    return callbacks


def total_steps_of(config: TrainConfig, num_train: int) -> int:
    """The run's length in steps (what the schedule spans)."""
    return config.steps if config.steps is not None else (num_train // config.batch_size) * config.epochs


def build_run(config: TrainConfig) -> dict[str, Any]:
    """Every object :class:`~pml_shrewd.training.Trainer` takes, built as ``config`` says.

    With ``freeze_backbone`` and ``cache_features`` the trained module is the model's head on
    cached backbone features, and the whole model (backbone + trained head) is what is saved.
    """
    from ..semantic_distances import build_semantic_distance

    spec = get_variant(config.variant)
    model = build_model(config)
    train, test, database = build_data(config, model)
    captions = getattr(train, "captions", None)
    if captions is not None and spec.needs_class_labels and not config.pseudo_labels:
        raise ValueError(
            f"variant {config.variant!r} needs class labels; captioned data has none "
            "(pseudo_labels=K trains it on K k-means clusters of the caption embeddings)"
        )
    if config.pseudo_labels and (captions is None or not spec.needs_class_labels):
        raise ValueError(
            "pseudo_labels is for label-based variants (PML baselines, L_cls) on captioned data; "
            f"got variant {config.variant!r} on {'captioned' if captions is not None else 'labelled'} data"
        )
    semantic_distance = build_semantic_distance(  # from explicit settings the saved run keeps
        config.semantic,
        classes=None if captions is not None else list(train.classes),
        captions=captions,
        hierarchy_file=config.hierarchy_file,
        sentence_model=config.sentence_model,
        # Several captions per image: targets over image ids, from all the training captions.
        caption_sets=getattr(train, "caption_sets", None),
        caption_target=config.caption_target,
        caption_seed=config.seed,
    )
    random_captions = config.caption_target == "random" and hasattr(semantic_distance, "as_mean")
    label_table = None
    if config.pseudo_labels:
        # Centroids from the training images only; every image gets its nearest one.
        label_table = semantic_distance.cluster_labels(config.pseudo_labels, config.seed, ids=train.targets)
    trained, export, images = model, None, train
    if config.cache_features:
        train_features, test_features = build_feature_data(config, model, train, test, database)
        # The database keeps every class; with holdout_classes the head trains (and takes its
        # standardisation) on the other classes' features only.
        database, train = train_features, holdout_features(config, train_features)
        train.missing = list(getattr(images, "missing", ()))  # listed images with no file
        if config.train_stages:
            trained = fine_tuning_model(config, model, train)
        else:
            model.head = fresh_head(config, train.features.shape[1], train.features)
            trained = model.head
        export, test = model, test_features
    elif config.freeze_backbone:
        model.backbone.requires_grad_(False)
    # After the model: SHRED's classifier draws its initialisation from the same seeded stream.
    # Class ids stay the data set's: with holdout_classes the classifier keeps one output per class
    # and the held-out ones never get a positive label (none of their images reaches the loss).
    loss_fn = build_objective(
        config.variant,
        semantic_distance,
        embedding_size=config.num_bits,
        num_classes=(config.pseudo_labels or train.num_labels) if spec.cls else None,
        label_table=label_table,
        **config.objective_settings(),
    )
    evaluator = build_evaluator(
        config, images, semantic_distance.as_mean() if random_captions else semantic_distance
    )
    return dict(
        model=trained,
        loss_fn=loss_fn,
        train_set=train,
        test_set=test,
        database_set=database,
        sampler=build_sampler(config, train),
        evaluator=evaluator,
        # A per-epoch caption draw is the provider's own on_step_start.
        callbacks=build_callbacks(config, total_steps_of(config, len(train)))
        + ([semantic_distance] if random_captions else []),
        export_model=export,
    )


def build_evaluator(config: TrainConfig, train, semantic_distance):
    """Held-out caption scoring (:class:`CaptionRetrievalEvaluator`, sentence and word relevance)
    when captioned data keeps ``held_out_captions``; else :class:`RetrievalEvaluator` with the
    training provider (for captions without held-out ones, that scoring is circular)."""
    from .evaluation import CaptionRetrievalEvaluator, RetrievalEvaluator

    held_out = getattr(train, "held_out_sets", None)
    if held_out and any(held_out):
        from ..retrieval import CAPTION_RELEVANCES, caption_relevance

        relevances = {
            kind: caption_relevance(held_out, kind, model=config.sentence_model)
            for kind in CAPTION_RELEVANCES
        }
        return CaptionRetrievalEvaluator(
            relevances, k=config.hp_k, max_db_samples=config.max_db_samples, seed=config.seed
        )
    return RetrievalEvaluator(
        semantic_distance,  # with caption_target="random": the mean target
        k=config.hp_k,
        max_db_samples=config.max_db_samples,
        seed=config.seed,
        label_metrics=getattr(train, "captions", None) is None,
        **evaluation_groups(config, train.classes),
    )


def default_num_workers() -> int:
    """Loader processes for image data: the cores this process may use, less one for the model."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores - 1))


__all__ = [
    "build_callbacks",
    "build_data",
    "build_evaluator",
    "build_feature_data",
    "build_model",
    "build_run",
    "build_sampler",
    "evaluation_groups",
    "default_num_workers",
    "fine_tuning_model",
    "fresh_head",
    "holdout_class_ids",
    "holdout_features",
    "total_steps_of",
]
