"""pml_baseline_loss: PML's losses with their miners, the same as composing them by hand."""

import json

import pytest
import torch
from pytorch_metric_learning import losses, miners
from test_data_layouts import write_captions, write_npz
from test_training_trainer import tiny_config

from pml_shrewd.losses import PML_BASELINES, pml_baseline_loss
from pml_shrewd.training import Trainer

BY_HAND = {
    "contrastive": lambda z, y: losses.ContrastiveLoss()(z, y),
    "triplet": lambda z, y: losses.TripletMarginLoss(margin=0.1)(
        z, y, miners.TripletMarginMiner(margin=0.1)(z, y)
    ),
    "multisimilarity": lambda z, y: losses.MultiSimilarityLoss()(z, y, miners.MultiSimilarityMiner()(z, y)),
}


@pytest.mark.parametrize("name", PML_BASELINES)
@pytest.mark.parametrize("shape", [(16, 8), (40, 32)])
def test_pml_baseline_matches_loss_and_miner_by_hand(name, shape):
    gen = torch.Generator().manual_seed(shape[0])
    z = torch.rand(*shape, generator=gen, requires_grad=True)
    y = torch.randint(0, 4, (shape[0],), generator=gen)
    loss = pml_baseline_loss(name)(z, y)
    torch.testing.assert_close(loss, BY_HAND[name](z, y))
    loss.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_pml_baseline_rejects_unknown_names():
    with pytest.raises(ValueError, match="must be one of"):
        pml_baseline_loss("arcface")


def test_training_cli_trains_a_pml_baseline(tmp_path):
    trainer = Trainer.from_config(
        tiny_config(write_npz(tmp_path / "d.npz"), tmp_path / "run", variant="triplet", epochs=1)
    )
    assert trainer.accelerator.unwrap_model(trainer.model).classifier is None  # no SHRED classifier
    metrics = trainer.fit()
    assert metrics["k"] == 20 and 0.0 <= metrics["mAHP@k"] <= 1.0
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["variant"] == "triplet"


def test_pml_baselines_need_class_labels(tmp_path):
    data = write_captions(tmp_path / "cap", copies=4)
    config = tiny_config(data, tmp_path / "run", dataset="captions", semantic="sentence", batch_size=4,
                         variant="contrastive", test_fraction=0.25, hp_k=10)  # fmt: skip
    with pytest.raises(ValueError, match="needs class labels"):
        Trainer.from_config(config)
