"""Fine-tuning mode (issue 18): the backbone's last stages train on cached float16 activations of
the frozen trunk, through the one training path; the cut is timm's and loses nothing but float16
rounding; the trained model deploys as a whole HashingModel."""

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from test_data_layouts import write_folder

from pml_shrewd.data import CIFAR10_CLASSES, FeatureSamples
from pml_shrewd.models.stages import BackboneTail, BackboneTrunk, PointwiseAsMatmul, TailHashModel, num_stages
from pml_shrewd.training import TrainConfig, Trainer, build_run, load_trained_model
from pml_shrewd.training.builders import build_data
from pml_shrewd.training.inference import encode_dataset

# ----------------------------------------------------------------------------- the cut itself


@pytest.mark.parametrize(
    "name, size",
    [
        ("test_efficientnet", 32),
        ("test_resnet", 32),
        ("tf_efficientnet_lite0", 64),
        ("mobilenetv3_small_050", 64),
    ],
)
def test_tail_of_trunk_is_the_backbone_at_every_cut(name, size):
    torch.manual_seed(0)
    net = timm.create_model(name, num_classes=0).eval()
    # BatchNorm statistics away from (0, 1), so a skipped or repeated layer would show.
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        reference = net(x)
        for k in range(1, num_stages(net) + 1):
            maps = BackboneTrunk(net, k)(x)
            tail = BackboneTail(net, k)
            torch.testing.assert_close(tail(maps), reference, rtol=0, atol=1e-5)
            # The cache is float16: the features move by float16 rounding only.
            half = tail(maps.half().float())
            assert (half - reference).abs().max() <= 2e-3 * reference.abs().max()


def test_tail_shares_the_backbone_modules_and_the_trunk_stops_early():
    net = timm.create_model("tf_efficientnet_lite0", num_classes=0)
    assert num_stages(net) == 7
    tail = BackboneTail(net, 1)
    assert tail.stages[0] is net.blocks[6] and list(tail.post) == [net.conv_head, net.bn2]
    trunk_ids = {id(p) for p in net.parameters()} - {id(p) for p in tail.parameters()}
    assert all(id(p) not in trunk_ids for p in net.blocks[6].parameters())
    assert all(id(p) in trunk_ids for p in net.blocks[5].parameters())  # the cut: blocks[5] is frozen
    calls = []
    hook = net.blocks[6].register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        maps = BackboneTrunk(net, 1).eval()(torch.randn(1, 3, 64, 64))
    hook.remove()
    assert not calls and maps.shape[1] == 192  # the trunk never runs the tail's stage


def test_bad_cuts_and_families_get_clear_errors():
    net = timm.create_model("test_efficientnet", num_classes=0)
    with pytest.raises(ValueError, match=r"train_stages must be an int in \[1, 5\] for EfficientNet"):
        BackboneTail(net, 6)
    with pytest.raises(ValueError, match=r"train_stages must be an int"):
        BackboneTrunk(net, 0)
    with pytest.raises(ValueError, match=r"supports timm's .*ResNet.*got ConvNeXt"):
        BackboneTail(timm.create_model("test_convnext", num_classes=0), 1)
    with pytest.raises(ValueError, match="needs cache_features"):
        TrainConfig(train_stages=1, freeze_backbone=True)
    with pytest.raises(ValueError, match="flip_activations needs train_stages"):
        TrainConfig(flip_activations=True, freeze_backbone=True, cache_features=True)
    with pytest.raises(ValueError, match="backbone_lr_scale must be > 0"):
        TrainConfig(backbone_lr_scale=0.0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        TailHashModel(BackboneTail(net, 1), torch.nn.Identity())(torch.randn(2, 8))


def test_flip_mirrors_maps_in_training_only():
    seen = []

    class Record(torch.nn.Module):
        def forward(self, x):
            seen.append(x)
            return x.mean((2, 3))

    model = TailHashModel(Record(), torch.nn.Identity(), flip=True)
    maps = torch.randn(64, 4, 3, 5)
    torch.manual_seed(0)
    model.train()(maps)
    same = (seen[-1] == maps).flatten(1).all(1)
    mirrored = (seen[-1] == maps.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all() and 10 < mirrored.sum() < 54  # each map kept or mirrored, about half
    model.eval()(maps)
    assert torch.equal(seen[-1], maps)


# ----------------------------------------------------------------------------- fast_tail: 1x1 convs as matmuls


@pytest.mark.parametrize(
    "shape, kw, replaced",
    [
        ((5, 7, 3, 3), {}, True),  # the pointwise convs of a tail
        ((5, 7, 4, 6), {"bias": True}, True),
        ((5, 7, 4, 4), {"stride": 2}, False),  # ResNet's strided 1x1 shortcut
        ((6, 8, 4, 4), {"groups": 2}, False),
        ((5, 7, 4, 4), {"padding": 1}, False),
        ((5, 7, 4, 4), {"kernel_size": 3}, False),
    ],
)
def test_pointwise_as_matmul_replaces_only_plain_1x1_convs(shape, kw, replaced):
    torch.manual_seed(0)
    n, c_in, h, w = shape
    conv = torch.nn.Conv2d(c_in, 12, kw.pop("kernel_size", 1), bias=kw.pop("bias", False), **kw).double()
    x = torch.randn(n, c_in, h, w, dtype=torch.float64)
    reference = conv(x)
    # The slow, obvious product: every pixel's channels times the weight matrix.
    with PointwiseAsMatmul():
        fast = conv(x.contiguous(memory_format=torch.channels_last))
    if replaced:
        slow = torch.einsum("nchw,oc->nohw", x, conv.weight[:, :, 0, 0])
        if conv.bias is not None:
            slow = slow + conv.bias[None, :, None, None]
        torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
        assert fast.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, size, stages", [("tf_efficientnet_lite0", 96, 1), ("test_efficientnet", 32, 2),
                                                ("test_resnet", 32, 2)])  # fmt: skip
def test_fast_tail_trains_the_same_function_and_evaluates_bitwise_as_deployed(name, size, stages):
    torch.manual_seed(0)
    net = timm.create_model(name, num_classes=0).eval()
    with torch.no_grad():
        maps = BackboneTrunk(net, stages)(torch.randn(16, 3, size, size))
    evaluated, trained, grads = [], [], []
    for fast in (False, True):
        torch.manual_seed(1)
        # A copy each: a training pass moves BatchNorm's running statistics.
        tail = BackboneTail(copy.deepcopy(net), stages)
        model = TailHashModel(tail, torch.nn.Linear(net.num_features, 8), fast=fast)
        with torch.no_grad():
            evaluated.append(model.eval()(maps))
        out = model.train()(maps)
        out.square().sum().backward()
        trained.append(out.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.equal(evaluated[1], evaluated[0])  # evaluation runs the modules as they are
    assert not torch.equal(trained[1], trained[0])  # ... and training did take the other kernels
    torch.testing.assert_close(trained[1], trained[0], rtol=1e-4, atol=1e-5)  # training: float rounding
    assert (grads[1] - grads[0]).norm() <= 1e-4 * grads[0].norm()


def test_fast_tail_needs_fine_tuning_mode():
    with pytest.raises(ValueError, match="fast_tail needs train_stages"):
        TrainConfig(fast_tail=True)


# ----------------------------------------------------------------------------- through the training path


@pytest.fixture
def data(tmp_path):
    return write_folder(tmp_path / "data", classes=CIFAR10_CLASSES, per_class=(6, 2))


def _config(data, out, **kw):
    base = dict(
        dataset="folder", data_path=str(data), backbone="test_efficientnet", num_bits=16, image_size=32,
        steps=12, batch_size=8, output_dir=str(out), mixed_precision="no", hp_k=5, eval_every=0,
        checkpoint_every=0, num_workers=0, print_epochs=False, freeze_backbone=True, cache_features=True,
        standardize_features=True, train_stages=2, variant="shred", semantic="label",
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("fast_tail", [False, True])
def test_fine_tuning_trains_the_tail_only_and_deploys_as_one_model(data, tmp_path, monkeypatch, fast_tail):
    monkeypatch.setenv("PML_SHREWD_CACHE", str(tmp_path / "cache"))
    config = _config(
        data, tmp_path / "run", flip_activations=True, backbone_lr_scale=0.1, fast_tail=fast_tail
    )
    run = build_run(config)
    train, model, full = run["train_set"], run["model"], run["export_model"]
    assert isinstance(model, TailHashModel) and model.head is full.head and model.fast is fast_tail
    assert isinstance(train, FeatureSamples) and train.features.dtype == torch.float16
    assert train.features.shape[1:] == (32, 4, 4) and len(train) == 60 and len(run["test_set"]) == 20
    cached = sorted(os.listdir(tmp_path / "cache" / "features"))
    # The maps, and the pooled features the same trunk pass gives (for frozen-feature rows).
    assert [n.split("-")[0] for n in cached] == ["activations"] * 2 + ["features"] * 2
    # The head starts from the untrained tail's feature statistics.
    pooled, _, _ = encode_dataset(model.tail, train, progress=False)
    torch.testing.assert_close(full.head.feature_mean, pooled.mean(0))

    before = {k: v.clone() for k, v in full.backbone.state_dict().items()}
    trainer = Trainer(**run, config=config)
    lrs = sorted(g["lr"] for g in trainer.optimizer.param_groups)
    assert lrs == pytest.approx([1e-4, 1e-3])  # the tail at lr x backbone_lr_scale
    metrics = trainer.fit()
    after = full.backbone.state_dict()
    changed = {
        k.split(".")[0] + "." + k.split(".")[1] for k in before if not torch.equal(before[k], after[k])
    }
    assert changed == {"blocks.3", "blocks.4", "conv_head.weight", "bn2.weight", "bn2.bias", "bn2.running_mean",
                       "bn2.running_var", "bn2.num_batches_tracked"}  # fmt: skip
    assert 0.0 <= metrics["mAP"] <= 1.0 and 0.0 <= metrics["mAHP@k"] <= 1.0

    # The saved model, run on the test images, gives the codes the tail gave on their cached maps.
    deployed, _ = load_trained_model(str(tmp_path / "run"))
    _, test_images, _ = build_data(config, deployed)
    codes_full, _, _ = encode_dataset(deployed, test_images, progress=False)
    codes_cached, _, _ = encode_dataset(model, run["test_set"], progress=False)
    assert codes_full.shape == (20, 16) and (codes_full - codes_cached).abs().max() < 2e-3


def test_fine_tuning_resumes_exactly(data, tmp_path, monkeypatch):
    monkeypatch.setenv("PML_SHREWD_CACHE", str(tmp_path / "cache"))
    kw = dict(checkpoint_every_steps=3, flip_activations=True, steps=8, variant="shrewd")
    full = Trainer.from_config(_config(data, tmp_path / "full", **kw))
    full.fit()
    Trainer.from_config(_config(data, tmp_path / "resumed", max_steps=3, **kw)).fit()
    resumed = Trainer.from_config(_config(data, tmp_path / "resumed", **kw))
    resumed.fit(resume=True)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert resumed.step == full.step == 8 and all(torch.equal(a[n], b[n]) for n in a)


def test_frozen_configs_keep_their_feature_cache_key(data, tmp_path, monkeypatch):
    # Adding the fine-tuning fields must not re-extract (or silently change) the frozen features.
    monkeypatch.setenv("PML_SHREWD_CACHE", str(tmp_path / "cache"))
    run = build_run(_config(data, tmp_path / "run", train_stages=0, variant="shrewd"))
    names = sorted(os.listdir(tmp_path / "cache" / "features"))
    assert len(names) == 2 and all(n.startswith("features-") for n in names)
    assert run["train_set"].features.dtype == torch.float32 and run["train_set"].features.dim() == 2
    stored = np.load(Path(tmp_path / "cache" / "features" / names[0]))["features"]
    assert stored.dtype == np.float32


def test_an_activation_pass_leaves_the_frozen_features_a_pooled_pass_gives(data, tmp_path, monkeypatch):
    # A benchmark with fine-tuned rows and a hash of the frozen features runs the trunk once: the
    # pooled cache the activation pass writes is what a frozen run extracts itself.
    monkeypatch.setenv("PML_SHREWD_CACHE", str(tmp_path / "both"))
    build_run(_config(data, tmp_path / "tail"))
    written = sorted(os.listdir(tmp_path / "both" / "features"))
    from_maps = build_run(_config(data, tmp_path / "frozen", train_stages=0, variant="shrewd"))
    assert sorted(os.listdir(tmp_path / "both" / "features")) == written  # a cache hit, nothing new
    monkeypatch.setenv("PML_SHREWD_CACHE", str(tmp_path / "alone"))
    direct = build_run(_config(data, tmp_path / "frozen2", train_stages=0, variant="shrewd"))
    assert sorted(os.listdir(tmp_path / "alone" / "features")) == [
        n for n in written if n.startswith("features-")
    ]
    for part in ("train_set", "test_set"):
        a, b = from_maps[part], direct[part]
        assert a.names == b.names and torch.equal(torch.as_tensor(a.targets), torch.as_tensor(b.targets))
        assert a.features.dtype == torch.float32
        torch.testing.assert_close(a.features, b.features, rtol=0, atol=0)
