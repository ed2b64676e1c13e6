"""CvT (Convolutional vision Transformer, Wu et al. 2021) as a backbone. timm has no CvT, so it
is written here, with parameter names equal to the released Microsoft CvT ImageNet weights
(`stage{i}.patch_embed.proj.weight`, `stage{i}.blocks.{j}.attn.conv_proj_q.conv.weight`, ...),
so those files load strictly (only the classifier `head.*` is dropped).

Each stage: a strided convolution turns the map into tokens (convolutional token embedding),
then transformer blocks whose queries, keys and values come from depth-wise conv + BatchNorm
projections of the token map (keys/values at stride 2). The last stage prepends a class token.
The backbone returns the last stage's patch tokens after the final LayerNorm as an NCHW map
(stride 16), as the official Query2Label uses CvT."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from timm.layers import DropPath, trunc_normal_
from torch import Tensor, nn

from ppq2l.arch.backbone import check_pretrained, load_local_weights
from ppq2l.checks import choice, number, number_list
from ppq2l.errors import ConfigError
from ppq2l.registry import BACKBONES


@dataclass(frozen=True)
class CvTSpec:
    """Per-stage settings (one entry per stage) of a CvT model."""
    dims: tuple[int, ...]
    depths: tuple[int, ...]
    heads: tuple[int, ...]
    patch_sizes: tuple[int, ...] = (7, 3, 3)
    patch_strides: tuple[int, ...] = (4, 2, 2)
    patch_paddings: tuple[int, ...] = (2, 1, 1)
    cls_token: tuple[bool, ...] = (False, False, True)
    mlp_ratio: float = 4.0
    kv_stride: int = 2
    drop_path_rate: float = 0.0


# Published configurations (Microsoft CvT experiments/imagenet/cvt/*.yaml, which Query2Label's
# lib/models/cls_cvt copies and builds its CvT-w24 from): stochastic depth DROP_PATH_RATE
# [0, 0, 0.1] for CvT-13/21 and [0, 0, 0.3] for CvT-w24, so a model trains as released.
CVT_SPECS = {
    "cvt_13": CvTSpec(dims=(64, 192, 384), depths=(1, 2, 10), heads=(1, 3, 6), drop_path_rate=0.1),
    "cvt_21": CvTSpec(dims=(64, 192, 384), depths=(1, 4, 16), heads=(1, 3, 6), drop_path_rate=0.1),
    "cvt_w24": CvTSpec(dims=(192, 768, 1024), depths=(2, 2, 20), heads=(3, 12, 16),
                       drop_path_rate=0.3),
}


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x), the GELU approximation the released CvT weights were trained with."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class ConvEmbed(nn.Module):
    """Strided convolution + LayerNorm: [B, C_in, H, W] -> [B, C, H/s, W/s]."""

    def __init__(self, in_chans: int, dim: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=kernel, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def conv_projection(dim: int, stride: int) -> nn.Sequential:
    """Depth-wise 3x3 conv + BatchNorm on the token map (named `conv`, `bn` as released)."""
    return nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(dim, dim, kernel_size=3, padding=1, stride=stride, groups=dim,
                           bias=False)),
        ("bn", nn.BatchNorm2d(dim)),
    ]))


class ConvAttention(nn.Module):
    """Multi-head attention whose q/k/v are conv projections of the token map followed by linear
    layers. Scores are scaled by dim**-0.5 (the whole width, as the released model does)."""

    def __init__(self, dim: int, heads: int, kv_stride: int, with_cls_token: bool) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"CvT: width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.scale = dim ** -0.5
        self.with_cls_token = with_cls_token
        self.conv_proj_q = conv_projection(dim, 1)
        self.conv_proj_k = conv_projection(dim, kv_stride)
        self.conv_proj_v = conv_projection(dim, kv_stride)
        self.proj_q = nn.Linear(dim, dim)
        self.proj_k = nn.Linear(dim, dim)
        self.proj_v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        """x: [B, (1 +) h*w, C] tokens (class token first when present)."""
        prefix = x[:, :1] if self.with_cls_token else x[:, :0]
        grid = x[:, prefix.shape[1]:].transpose(1, 2).reshape(x.shape[0], -1, height, width)
        q, k, v = (torch.cat((prefix, conv(grid).flatten(2).transpose(1, 2)), dim=1)
                   for conv in (self.conv_proj_q, self.conv_proj_k, self.conv_proj_v))
        q, k, v = (self.split_heads(linear(t)) for linear, t in
                   ((self.proj_q, q), (self.proj_k, k), (self.proj_v, v)))
        weights = torch.softmax(q @ k.transpose(-2, -1) * self.scale, dim=-1)
        out = (weights @ v).transpose(1, 2).flatten(2)
        return self.proj(out)

    def split_heads(self, x: Tensor) -> Tensor:
        """[B, T, C] -> [B, heads, T, C/heads]."""
        return x.reshape(x.shape[0], x.shape[1], self.heads, -1).transpose(1, 2)


class Mlp(nn.Module):
    """fc1 -> QuickGELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = QuickGELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block with convolutional-projection attention."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, kv_stride: int,
                 with_cls_token: bool, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = ConvAttention(dim, heads, kv_stride, with_cls_token)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), height, width))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Stage(nn.Module):
    """Convolutional token embedding, optional class token, then `depth` blocks."""

    def __init__(self, spec: CvTSpec, index: int, in_chans: int,
                 drop_paths: list[float]) -> None:
        super().__init__()
        dim = spec.dims[index]
        self.patch_embed = ConvEmbed(in_chans, dim, spec.patch_sizes[index],
                                     spec.patch_strides[index], spec.patch_paddings[index])
        with_cls = spec.cls_token[index]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if with_cls else None
        self.blocks = nn.ModuleList(
            Block(dim, spec.heads[index], spec.mlp_ratio, spec.kv_stride, with_cls, rate)
            for rate in drop_paths)
        if self.cls_token is not None:
            trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C_in, H, W] -> patch-token map [B, C, H/s, W/s] (class token dropped)."""
        x = self.patch_embed(x)
        batch, channels, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            tokens = torch.cat((self.cls_token.expand(batch, -1, -1), tokens), dim=1)
        for block in self.blocks:
            tokens = block(tokens, height, width)
        patches = tokens[:, tokens.shape[1] - height * width:]
        return patches.transpose(1, 2).reshape(batch, channels, height, width)


class CvTBody(nn.Module):
    """The stages `stage0..stage{n-1}` of a CvT model and the final LayerNorm `norm`."""

    def __init__(self, spec: CvTSpec) -> None:
        super().__init__()
        lengths = {len(spec.dims), len(spec.depths), len(spec.heads), len(spec.patch_sizes),
                   len(spec.patch_strides), len(spec.patch_paddings), len(spec.cls_token)}
        if len(lengths) != 1:
            raise ConfigError(f"CvT: every per-stage list needs one entry per stage, got {spec}")
        in_chans = 3
        for index, depth in enumerate(spec.depths):
            # Stochastic depth rises linearly over the blocks of the last stage only, as released.
            last = index == len(spec.depths) - 1
            rates = torch.linspace(0, spec.drop_path_rate if last else 0.0, depth).tolist()
            self.add_module(f"stage{index}", Stage(spec, index, in_chans, rates))
            in_chans = spec.dims[index]
        self.num_stages = len(spec.depths)
        self.norm = nn.LayerNorm(spec.dims[-1], eps=1e-5)
        self.apply(init_weights)

    def forward(self, images: Tensor) -> Tensor:
        x = images
        for index in range(self.num_stages):
            x = getattr(self, f"stage{index}")(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def init_weights(module: nn.Module) -> None:
    """Truncated-normal linear weights, zero biases, unit norms (the released 'trunc_norm' init)."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


@BACKBONES.register
class CvT(nn.Module):
    """CvT backbone. `arch`: one of CVT_SPECS (cvt_13, cvt_21, cvt_w24), or give `dims`, `depths`
    and `heads` (one entry per stage) for a custom size. `drop_path_rate`: the stochastic depth of
    the last stage, rising linearly over its blocks (default: the released configuration's, 0.3
    for cvt_w24, 0.1 otherwise; 0 turns it off). `pretrained`: False or a local weight file with
    the released key names (there is no hub download for CvT)."""

    def __init__(self, arch: str = "cvt_w24", pretrained: bool | str = False,
                 dims: list[int] | None = None, depths: list[int] | None = None,
                 heads: list[int] | None = None, drop_path_rate: float | None = None) -> None:
        super().__init__()
        where = "CvT"
        choice(arch, "arch", tuple(CVT_SPECS), where=where)
        pretrained = check_pretrained(pretrained, arch)
        if pretrained is True:
            raise ConfigError("CvT: no hub download for CvT weights; set pretrained to the path "
                              "of a released CvT weight file (e.g. CvT-w24-384x384-IN-22k.pth)")
        spec = CVT_SPECS[arch]
        overrides = {key: tuple(number_list(value, key, integers=True, minimum=1, where=where,
                                            example="[64, 192, 384] (one per stage)"))
                     for key, value in (("dims", dims), ("depths", depths), ("heads", heads))
                     if value is not None}
        if drop_path_rate is not None:
            overrides["drop_path_rate"] = number(drop_path_rate, "drop_path_rate", minimum=0.0,
                                                 below=1.0, where=where)
        spec = CvTSpec(**{**spec.__dict__, **overrides})
        self.name = arch
        self.body = CvTBody(spec)
        self.num_channels = spec.dims[-1]
        stride = 1
        for step in spec.patch_strides:
            stride *= step
        self.stride = stride
        if isinstance(pretrained, str):
            load_local_weights(self.body, pretrained, arch)

    def forward(self, images: Tensor) -> Tensor:
        """Feature map [B, num_channels, H/stride, W/stride] of images [B, 3, H, W]."""
        return self.body(images)
