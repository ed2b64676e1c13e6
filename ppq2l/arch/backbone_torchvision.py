"""torchvision ResNet backbone as the official Query2Label trains it: FrozenBatchNorm2d everywhere
(affine and running statistics fixed), stem and layer1 frozen, output = layer4 (stride 32).
Its state-dict keys are torchvision's ResNet keys without `fc.*`, so official Query2Label
checkpoints (`module.backbone.0.body.*`) map onto `backbone.body.*` by renaming only."""
from __future__ import annotations

import torchvision
from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d

from ppq2l.arch.backbone import check_pretrained, download_failed, load_local_weights
from ppq2l.checks import choice, flag, integer
from ppq2l.registry import BACKBONES

RESNET_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
# Modules frozen by frozen_stages = k: the stem for k >= 0, then layer1..layer_k.
STEM = ("conv1", "bn1")
STAGES = ("layer1", "layer2", "layer3", "layer4")


class ResNetBody(nn.Module):
    """torchvision ResNet up to layer4 (no pooling, no fc), keeping torchvision's module names."""

    def __init__(self, resnet: nn.Module) -> None:
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", *STAGES):
            self.add_module(name, getattr(resnet, name))

    def forward(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] -> layer4 map [B, C, H/32, W/32]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


@BACKBONES.register
class TorchvisionResNet(nn.Module):
    """A torchvision ResNet backbone. `arch`: resnet18..resnet152; `frozen_bn`: use
    FrozenBatchNorm2d (eps 1e-5 like BatchNorm2d; statistics and affine are buffers);
    `frozen_stages`: -1 trains everything, 0 freezes conv1/bn1, k freezes also layer1..layer_k
    (official Query2Label: 1); `pretrained`: False, True (torchvision's IMAGENET1K_V1 weights,
    downloaded by torchvision) or a local weight file with torchvision key names."""

    def __init__(self, arch: str = "resnet101", pretrained: bool | str = False,
                 frozen_bn: bool = True, frozen_stages: int = 1) -> None:
        super().__init__()
        where = "TorchvisionResNet"
        choice(arch, "arch", RESNET_ARCHS, where=where)
        integer(frozen_stages, "frozen_stages", minimum=-1, maximum=len(STAGES),
                why="-1: train every stage", where=where)
        pretrained = check_pretrained(pretrained, arch)
        norm_layer = FrozenBatchNorm2d if flag(frozen_bn, "frozen_bn", where=where) else nn.BatchNorm2d
        # The official Query2Label starts from torchvision's original ImageNet weights (V1).
        weights = "IMAGENET1K_V1" if pretrained is True else None
        try:
            resnet = getattr(torchvision.models, arch)(weights=weights, norm_layer=norm_layer)
        except OSError as error:  # urllib's URLError included
            raise download_failed(arch, "download.pytorch.org (torchvision)", error) from None
        self.name = arch
        self.body = ResNetBody(resnet)
        self.num_channels = int(resnet.fc.in_features)
        self.stride = 32
        if isinstance(pretrained, str):
            load_local_weights(self.body, pretrained, arch)
        self.frozen_modules = frozen_module_names(frozen_stages)
        for name in self.frozen_modules:
            getattr(self.body, name).requires_grad_(False)

    def forward(self, images: Tensor) -> Tensor:
        """Feature map [B, num_channels, H/32, W/32] of images [B, 3, H, W]."""
        return self.body(images)

    def extra_repr(self) -> str:
        return f"arch={self.name}, frozen={list(self.frozen_modules)}"


def frozen_module_names(frozen_stages: int) -> tuple[str, ...]:
    """Names of the body modules whose parameters `frozen_stages` freezes."""
    if frozen_stages < 0:
        return ()
    return STEM + STAGES[:frozen_stages]


