"""HashHead / HashingModel: shapes, ranges, small-image stem, local weights file."""

import json
import os

import pytest
import timm
import torch
from torch import nn

from pml_shrewd.models import HashHead, HashingModel, create_hashing_model


def test_hash_head_matches_explicit_sigmoid_of_linear():
    torch.manual_seed(0)
    head = HashHead(12, num_bits=8, num_classes=3)
    x = torch.randn(5, 12)
    z = head(x)
    w, b = head.proj.weight, head.proj.bias
    for i in range(5):
        for j in range(8):
            ref = 1.0 / (1.0 + torch.exp(-(sum(w[j, t] * x[i, t] for t in range(12)) + b[j])))
            assert torch.allclose(z[i, j], ref, atol=1e-6)
    assert head.classifier(z).shape == (5, 3)
    assert HashHead(12, 8).classifier is None
    assert HashHead(12, 8, hidden_dim=16)(x).shape == (5, 8)


def test_hash_head_batch_norm_centres_bits_on_the_threshold():
    torch.manual_seed(0)
    head = HashHead(12, num_bits=8, batch_norm=True).train()
    x = 3.0 + 5.0 * torch.randn(64, 12)  # far off-centre features
    pre = head.proj(x)
    expected = torch.sigmoid((pre - pre.mean(0)) / torch.sqrt(pre.var(0, unbiased=False) + 1e-5))
    z = head(x)
    assert torch.allclose(z, expected, atol=1e-5)
    # Each bit splits the batch around 0.5 instead of saturating on one side.
    assert ((z > 0.5).float().mean(0) - 0.5).abs().max() < 0.3
    head.eval()
    assert head(x[:1]).shape == (1, 8)  # running statistics serve single items


def test_hash_head_drop_rate_drops_inputs_in_training_only():
    torch.manual_seed(0)
    head = HashHead(400, num_bits=8, drop_rate=0.5)
    x = torch.randn(3, 400)
    head.eval()
    plain = HashHead(400, num_bits=8)
    plain.load_state_dict(head.state_dict())
    assert torch.equal(head(x), plain.eval()(x))  # inference ignores dropout
    head.train()
    seen = []
    head.proj.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0]))
    head(x)
    zeroed = (seen[0] == 0).float().mean().item()
    assert 0.4 < zeroed < 0.6  # about half the inputs dropped ...
    kept = seen[0] != 0
    assert torch.allclose(seen[0][kept], 2.0 * x[kept])  # ... and the rest scaled by 1 / (1 - p)


@pytest.mark.parametrize(
    "bad",
    [
        dict(in_features=0),
        dict(num_bits=-1),
        dict(hidden_dim=0),
        dict(num_classes=-2),
        dict(drop_rate=1.0),
        dict(drop_rate=-0.1),
    ],
)
def test_hash_head_rejects_bad_arguments(bad):
    kwargs = dict(in_features=4, num_bits=8) | bad
    with pytest.raises(ValueError):
        HashHead(**kwargs)


def test_hash_head_rejects_wrong_feature_shape():
    with pytest.raises(ValueError, match="shape"):
        HashHead(4, 8)(torch.randn(2, 5))


def test_hashing_model_small_images_adapts_resnet_stem():
    model = HashingModel("resnet18", num_bits=16, small_images=True, num_classes=4)
    assert isinstance(model.backbone.maxpool, nn.Identity)
    assert model.backbone.conv1.kernel_size == (3, 3) and model.backbone.conv1.stride == (1, 1)
    assert model.data_config["input_size"] == (3, 32, 32)
    deep = HashingModel("test_resnet", num_bits=16, small_images=True)
    first = next(m for m in deep.backbone.conv1.modules() if isinstance(m, nn.Conv2d))
    assert first.stride == (1, 1) and isinstance(deep.backbone.maxpool, nn.Identity)
    z = deep(torch.randn(2, 3, 32, 32))
    assert z.shape == (2, 16) and bool(((z > 0) & (z < 1)).all())
    # No stride left in the stem: 32x32 input keeps 4x more pooled positions than the ImageNet stem.
    plain = HashingModel("test_resnet", num_bits=16)
    x = torch.randn(1, 3, 32, 32)
    deep.eval(), plain.eval()
    h_small = deep.backbone.forward_features(x).shape[-1]
    h_plain = plain.backbone.forward_features(x).shape[-1]
    assert h_small == 4 * h_plain


def test_hashing_model_classifier_and_transforms():
    from PIL import Image

    model = HashingModel("test_resnet", num_bits=8, num_classes=5, small_images=True, image_size=16)
    assert isinstance(model.classifier, nn.Linear) and model.classifier.out_features == 5
    img = Image.new("RGB", (20, 24), (10, 200, 30))
    assert model.transform(train=True)(img).shape == (3, 16, 16)
    assert model.transform(train=False)(img).shape == (3, 16, 16)
    assert HashingModel("test_resnet", num_bits=8).classifier is None


def test_crop_pct_sets_the_eval_crop_and_survives_save_and_load(tmp_path):
    from PIL import Image

    # A 40x40 image with a 4-pixel white border: crop_pct 0.5 resizes to 80 and keeps the
    # centre 40 (no border left), 1.0 keeps the whole image (white at the edge).
    img = Image.new("RGB", (40, 40), (255, 255, 255))
    img.paste((0, 0, 0), (4, 4, 36, 36))
    timm_default = HashingModel("test_efficientnet", num_bits=8, image_size=40).data_config["crop_pct"]
    assert timm_default == timm.create_model("test_efficientnet").pretrained_cfg["crop_pct"]
    half = HashingModel("test_efficientnet", num_bits=8, image_size=40, crop_pct=0.5)
    whole = HashingModel("test_efficientnet", num_bits=8, image_size=40, crop_pct=1.0)
    assert half.data_config["crop_pct"] == 0.5 and whole.data_config["crop_pct"] == 1.0
    edge_half = half.transform(train=False)(img)[:, 0, 20]
    edge_whole = whole.transform(train=False)(img)[:, 0, 20]
    assert edge_whole.min() > 2.0 and edge_half.max() < -1.5  # white vs black, normalised
    whole.save_pretrained(tmp_path / "m")
    assert HashingModel.from_pretrained(tmp_path / "m").data_config["crop_pct"] == 1.0
    for bad in (0, 1.5, "all"):
        with pytest.raises(ValueError, match="crop_pct"):
            HashingModel("test_resnet", num_bits=8, crop_pct=bad)


def test_small_images_on_other_family_warns_and_upsamples():
    with pytest.warns(UserWarning, match="upsampled"):
        model = HashingModel("test_efficientnet", num_bits=8, small_images=True)
    assert model.data_config["input_size"][1] > 32


def test_unknown_backbone_and_missing_weights_file_raise(tmp_path):
    with pytest.raises(ValueError, match="unknown timm backbone"):
        HashingModel("no_such_net", num_bits=8)
    with pytest.raises(FileNotFoundError):
        HashingModel("test_resnet", pretrained_file=tmp_path / "missing.pth")


def test_pretrained_file_loads_local_weights(tmp_path):
    import timm

    torch.manual_seed(123)
    source = timm.create_model("test_resnet", num_classes=0)
    path = tmp_path / "backbone.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(999)  # a different random init, overwritten by the file
    model = HashingModel("test_resnet", num_bits=8, pretrained_file=path)
    for key, value in source.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
    # A file for another architecture is refused with a clear error.
    other = tmp_path / "other.pth"
    torch.save(timm.create_model("test_efficientnet", num_classes=0).state_dict(), other)
    with pytest.raises((ValueError, RuntimeError)):
        HashingModel("test_resnet", num_bits=8, pretrained_file=other)


def test_create_hashing_model_rebuilds_from_config(tmp_path):
    import json

    model = HashingModel("test_resnet", num_bits=12, num_classes=3, small_images=True)
    again = create_hashing_model(model.config)
    again.load_state_dict(model.state_dict())  # strict: same architecture
    path = tmp_path / "model.json"
    path.write_text(json.dumps(model.config))
    assert create_hashing_model(str(path)).num_bits == 12
    assert create_hashing_model("test_resnet", num_bits=4).num_bits == 4
    with pytest.raises(TypeError):
        create_hashing_model(3)


# --------------------------------------------------------------------- any timm backbone (issue 19, item 12)
@pytest.mark.parametrize(
    "name, size, kwargs",
    [
        ("test_resnet", 32, {}),
        ("test_resnet", 32, {"global_pool": "catavgmax"}),  # pooled output twice num_features
        ("test_efficientnet", 32, {}),
        ("mobilenetv3_small_050", 32, {}),  # head_hidden_size 1024 != num_features 288
        ("lcnet_050", 32, {}),  # head_hidden_size 1280 != num_features 256
        ("test_convnext", 32, {}),
        ("test_vit", 160, {}),  # a fixed-size ViT: its own input size
        ("regnetx_002", 32, {}),
    ],
)
def test_head_is_sized_from_what_the_backbone_returns(name, size, kwargs):
    torch.manual_seed(0)
    model = HashingModel(name, num_bits=8, image_size=size, **kwargs).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        features = model.features(x)
        z = model(x)
    assert features.shape == (2, model.feature_dim) and model.head.in_features == model.feature_dim
    assert z.shape == (2, 8) and bool(((z > 0) & (z < 1)).all())


def test_backbone_feature_dim_falls_back_to_a_dry_forward():
    from pml_shrewd.models.hashing_model import backbone_feature_dim

    plain = nn.Sequential(nn.Conv2d(3, 5, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).train()
    assert backbone_feature_dim(plain, (3, 16, 16)) == 5
    assert plain.training  # the dry forward leaves the mode as it was
    with pytest.raises(ValueError, match="global_pool"):
        backbone_feature_dim(nn.Conv2d(3, 5, 3), (3, 16, 16))


# --------------------------------------------------------------------- offline pretrained weights (item 13)
@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """No weights in any local cache (a fresh machine)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return constants


def test_pretrained_with_the_hub_offline_fails_fast_with_a_hint(empty_hub_cache, monkeypatch):
    import time

    from pml_shrewd.models.hashing_model import PretrainedWeightsUnavailable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        HashingModel("test_resnet", num_bits=8, pretrained=True)
    assert time.monotonic() - start < 20
    message = str(info.value)
    assert "--pretrained-file" in message and "efficientnet_lite0_weights" in message
    assert "'test_resnet'" in message and isinstance(info.value, RuntimeError)


def test_pretrained_with_the_hub_unreachable_fails_fast_with_a_hint(empty_hub_cache, monkeypatch):
    import time

    from pml_shrewd.models.hashing_model import PretrainedWeightsUnavailable, hub_reachable

    # Online mode, but the hub does not answer (a closed local port): no minute of retries.
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY",
                "http_proxy", "ALL_PROXY", "all_proxy"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(empty_hub_cache, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(empty_hub_cache, "ENDPOINT", "http://127.0.0.1:9")
    assert not hub_reachable(timeout=1.0)
    start = time.monotonic()
    with pytest.raises(PretrainedWeightsUnavailable, match="--pretrained-file"):
        HashingModel("test_resnet", num_bits=8, pretrained=True)
    assert time.monotonic() - start < 20
    assert empty_hub_cache.HF_HUB_OFFLINE is False  # the temporary offline mode is undone


def test_pretrained_weights_in_the_local_cache_still_load_offline(empty_hub_cache, monkeypatch):
    # What a download leaves in the hub cache: snapshots/<commit>/<file> plus refs/main.
    import timm
    from huggingface_hub import constants
    from safetensors.torch import save_file

    source = timm.create_model("test_resnet", num_classes=0)
    repo = "timm/" + source.pretrained_cfg["hf_hub_id"].split("/")[-1]
    folder = os.path.join(constants.HF_HUB_CACHE, "models--" + repo.replace("/", "--"))
    commit = "0" * 40
    os.makedirs(os.path.join(folder, "snapshots", commit))
    os.makedirs(os.path.join(folder, "refs"))
    with open(os.path.join(folder, "refs", "main"), "w") as f:
        f.write(commit)
    full = timm.create_model("test_resnet")
    torch.nn.init.constant_(full.fc.weight, 0.5)
    save_file(
        {k: v.contiguous() for k, v in full.state_dict().items()},
        os.path.join(folder, "snapshots", commit, "model.safetensors"),
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = HashingModel("test_resnet", num_bits=8, pretrained=True)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, full.state_dict()[key]), key


# --------------------------------------------------------------------- save_pretrained / from_pretrained (issue 15)
def _trained_like(num_classes=3):
    torch.manual_seed(0)
    model = HashingModel(
        "test_resnet", num_bits=12, num_classes=num_classes, small_images=True, batch_norm=True, hidden_dim=16
    )
    model.train()(torch.randn(8, 3, 32, 32))  # BatchNorm running statistics move off their defaults
    return model.eval()


@pytest.mark.parametrize("safe", [True, False])
def test_save_pretrained_round_trip_gives_the_same_outputs(tmp_path, safe):
    model = _trained_like()
    weights = model.save_pretrained(
        tmp_path / "m",
        classes=["cat", "dog", "truck"],
        extra={"train": {"epochs": 3}},
        safe_serialization=safe,
    )
    assert os.path.basename(weights) == ("model.safetensors" if safe else "model.pt")
    assert sorted(os.listdir(tmp_path / "m")) == sorted(["config.json", os.path.basename(weights)])
    info = json.loads((tmp_path / "m" / "config.json").read_text())
    assert info["architecture"] == "pml_shrewd.HashingModel" and info["model"] == model.config
    assert info["classes"] == ["cat", "dog", "truck"] and info["train"] == {"epochs": 3}
    again = HashingModel.from_pretrained(tmp_path / "m")
    assert not again.training and again.classes == ["cat", "dog", "truck"]
    assert again.pretrained_info["train"] == {"epochs": 3} and again.data_config == model.data_config
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
        assert torch.equal(again.classifier(again(x)), model.classifier(model(x)))
    # Saving again in the other format: config.json names the new file, which is the one read.
    torch.nn.init.zeros_(model.head.proj[0].bias)
    other = model.save_pretrained(tmp_path / "m", safe_serialization=not safe)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["weights"] == os.path.basename(other)
    with torch.no_grad():
        assert torch.equal(HashingModel.from_pretrained(tmp_path / "m")(x), model(x))
    named = model.save_pretrained(tmp_path / "ckpt", weights_name="hashing_model.pt")
    assert os.path.basename(named) == "hashing_model.pt" and HashingModel.from_pretrained(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="plain file name"):
        model.save_pretrained(tmp_path / "bad", weights_name="../x.pt")


def test_from_pretrained_reads_the_trainers_layout(tmp_path):
    # What Trainer.save_model / load_trained_model use: config.json {model, data_config, classes, train} + model.pt.
    model = _trained_like()
    run = tmp_path / "run"
    run.mkdir()
    torch.save(model.state_dict(), run / "model.pt")
    data_config = {k: list(v) if isinstance(v, tuple) else v for k, v in model.data_config.items()}
    info = {
        "model": model.config,
        "data_config": data_config,
        "classes": ["a", "b", "c"],
        "train": {"seed": 0},
    }
    (run / "config.json").write_text(json.dumps(info))
    # A checkpoint folder also holds accelerate's model.safetensors (here: what a head-only
    # prepared model would leave): without a "weights" entry the trainer's model.pt is read.
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.head.state_dict().items()}, run / "model.safetensors")
    again = HashingModel.from_pretrained(run)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    assert again.pretrained_info == info and again.classes == ["a", "b", "c"]
    assert again.transform(train=False)(__import__("PIL.Image").Image.new("RGB", (40, 40))).shape == (
        3,
        32,
        32,
    )


def test_from_pretrained_errors_name_the_file(tmp_path):
    model = _trained_like(num_classes=0)
    with pytest.raises(FileNotFoundError, match="no trained model.*no such folder"):
        HashingModel.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no trained model.*config\.json"):
        HashingModel.from_pretrained(tmp_path / "empty")

    folder = tmp_path / "m"
    weights = model.save_pretrained(folder)
    cfg = folder / "config.json"
    good = cfg.read_text()
    cfg.write_text(good[: len(good) // 2])  # truncated
    with pytest.raises(ValueError, match=rf"{cfg}.*not valid JSON"):
        HashingModel.from_pretrained(folder)
    cfg.write_text(json.dumps({"classes": []}))
    with pytest.raises(ValueError, match=rf"{cfg}.*'model'"):
        HashingModel.from_pretrained(folder)
    cfg.write_text(good)

    data = open(weights, "rb").read()
    with open(weights, "wb") as f:
        f.write(data[: len(data) // 3])  # truncated weights
    with pytest.raises(ValueError, match=rf"{weights}.*not a readable weights file"):
        HashingModel.from_pretrained(folder)
    os.remove(weights)
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors.*named in config\.json.*missing"):
        HashingModel.from_pretrained(folder)
    legacy = json.loads(good)
    del legacy["weights"]
    cfg.write_text(json.dumps(legacy))
    with pytest.raises(FileNotFoundError, match=r"model\.pt.*model\.safetensors"):
        HashingModel.from_pretrained(folder)
    cfg.write_text(good)

    # Weights of another architecture: named, with what does not fit.
    HashingModel("test_resnet", num_bits=4).save_pretrained(tmp_path / "other")
    os.replace(tmp_path / "other" / "model.safetensors", folder / "model.safetensors")
    with pytest.raises(ValueError, match="does not fit the architecture"):
        HashingModel.from_pretrained(folder)


# --------------------------------------------------------------------- encode_dataset progress (item 18)
def test_encode_dataset_shows_a_progress_bar_that_can_be_turned_off(tmp_path, capsys):
    from PIL import Image

    from pml_shrewd.data import ImageFiles
    from pml_shrewd.training.inference import encode_dataset

    paths = []
    for i in range(5):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(paths[-1])
    model = HashingModel("test_resnet", num_bits=8, small_images=True, image_size=16)
    data = ImageFiles(paths, model.transform(train=False))
    codes, _, kept = encode_dataset(model, data, batch_size=2, device="cpu")
    err = capsys.readouterr().err
    assert codes.shape == (5, 8) and kept == list(range(5))
    assert "encoding" in err and "/5 [" in err and "img/s" in err
    encode_dataset(model, data, batch_size=2, device="cpu", progress=False)
    assert "encoding" not in capsys.readouterr().err
