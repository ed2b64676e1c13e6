"""TorchvisionResNet: torchvision key names, FrozenBatchNorm2d equal to eval-mode BatchNorm,
frozen stem/layer1 without gradients and outside the optimizer, local weight files."""
import pytest
import torch
import torchvision
from torch import nn

from ppq2l.arch.backbone import build_backbone
from ppq2l.arch.backbone_torchvision import TorchvisionResNet
from ppq2l.errors import CheckpointError, ConfigError
from ppq2l.optimizer.optimizers import parameter_groups


@pytest.fixture(scope="module")
def resnet18():
    return build_backbone({"name": "TorchvisionResNet", "arch": "resnet18"})


def test_keys_are_torchvision_resnet_keys_without_fc(resnet18):
    reference = torchvision.models.resnet18(weights=None).state_dict()
    expected = {key for key in reference
                if not key.startswith("fc.") and not key.endswith("num_batches_tracked")}
    assert set(resnet18.body.state_dict()) == expected
    assert resnet18.num_channels == 512 and resnet18.stride == 32
    assert resnet18(torch.randn(1, 3, 64, 96)).shape == (1, 512, 2, 3)


def test_frozen_bn_equals_eval_mode_batchnorm_with_the_same_statistics():
    frozen = TorchvisionResNet("resnet18", frozen_bn=True).train()
    plain = torchvision.models.resnet18(weights=None)
    generator = torch.Generator().manual_seed(0)
    for module in plain.modules():
        if isinstance(module, nn.BatchNorm2d):
            for tensor in (module.weight, module.bias, module.running_mean):
                tensor.data.normal_(generator=generator)
            module.running_var.data.uniform_(0.5, 2.0, generator=generator)
    state = {key: value for key, value in plain.state_dict().items() if not key.startswith("fc.")}
    result = frozen.body.load_state_dict(
        {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    images = torch.randn(2, 3, 64, 64)
    plain.eval()
    expected = plain.layer4(plain.layer3(plain.layer2(plain.layer1(
        plain.maxpool(plain.relu(plain.bn1(plain.conv1(images))))))))
    # Frozen BN ignores train mode: the result is the eval-mode result, batch statistics unused.
    torch.testing.assert_close(frozen(images), expected, rtol=1e-4, atol=1e-4)
    assert frozen.body.bn1.eps == plain.bn1.eps == 1e-5


def test_frozen_stages_get_no_gradient_and_stay_out_of_the_optimizer(resnet18):
    resnet18(torch.randn(1, 3, 64, 64)).sum().backward()
    frozen = [(n, p) for n, p in resnet18.named_parameters()
              if n.startswith(("body.conv1", "body.bn1", "body.layer1"))]
    trainable = [(n, p) for n, p in resnet18.named_parameters() if n.startswith("body.layer2")]
    # FrozenBatchNorm2d holds its affine as buffers, so only convolutions are parameters.
    assert frozen and all(not p.requires_grad and p.grad is None for _, p in frozen)
    assert trainable and all(p.grad is not None for _, p in trainable)
    grouped = {id(p) for group in parameter_groups(resnet18) for p in group["params"]}
    assert not grouped & {id(p) for _, p in frozen}
    assert {id(p) for _, p in trainable} <= grouped


def test_frozen_stages_minus_one_trains_everything():
    backbone = TorchvisionResNet("resnet18", frozen_stages=-1, frozen_bn=False)
    assert all(p.requires_grad for p in backbone.parameters())
    assert isinstance(backbone.body.bn1, nn.BatchNorm2d)


def test_local_torchvision_weight_file_loads_and_a_wrong_one_is_explained(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    good = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), good)  # with fc.* and num_batches_tracked, as released
    backbone = TorchvisionResNet("resnet18", pretrained=str(good))
    torch.testing.assert_close(backbone.body.layer3[0].conv1.weight,
                               reference.layer3[0].conv1.weight)
    bad = tmp_path / "bad.pth"
    state = reference.state_dict()
    state["extra.weight"] = state.pop("layer4.1.conv2.weight")
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match=r"missing \(1\): layer4\.1\.conv2\.weight.*"
                                              r"unexpected \(1\): extra\.weight"):
        TorchvisionResNet("resnet18", pretrained=str(bad))


@pytest.mark.parametrize("kwargs, message", [
    ({"arch": "resnet99"}, r"arch must be one of resnet18, .*resnet152, got 'resnet99'\. Did you mean"),
    ({"frozen_stages": 5}, r"^Arch\.backbone TorchvisionResNet: frozen_stages must be an integer from -1 to 4"),
    ({"frozen_bn": "yes"}, r"^Arch\.backbone TorchvisionResNet: frozen_bn must be true or false, got 'yes'"),
])
def test_bad_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        build_backbone({"name": "TorchvisionResNet", **kwargs})


def test_pretrained_true_asks_torchvision_for_the_original_imagenet_weights(monkeypatch):
    requested = {}
    original = torchvision.models.resnet18

    def record(weights=None, **kwargs):
        requested["weights"] = weights
        return original(weights=None, **kwargs)  # no download in tests

    monkeypatch.setattr(torchvision.models, "resnet18", record)
    TorchvisionResNet("resnet18", pretrained=True)
    assert requested["weights"] == "IMAGENET1K_V1"
