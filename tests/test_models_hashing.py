"""HashHead / HashingModel: shapes, ranges, small-image stem, local weights file."""

import pytest
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
