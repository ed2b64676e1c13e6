"""Official Query2Label Swin-L and CvT-w24 checkpoints convert with `--from q2l`.

The official code keeps these backbones as the model itself under `backbone.0.` (no
IntermediateLayerGetter `body.`), and its Swin is Microsoft's: PatchMerging at the end of a stage
instead of the start of the next, and relative-position-index / attention-mask buffers that timm
recomputes. Two kinds of check:

- always: a checkpoint in the official layout converts to the same logits bit for bit, and where
  the two Swin implementations differ (the buffers timm recomputes instead of loading, the order
  of the merged patches) timm equals an independent transcription of Microsoft's formulas;
- with the official source (a checkout of SlongLiu/query2labels named by PPQ2L_Q2L_SOURCE, plus
  einops and scipy for its CvT): the official modules with random weights, converted, give the
  same backbone features and logits within 1e-4. Skipped, saying so, without them.
"""
import importlib.util
import os
import re
import sys
import types
from functools import partial
from pathlib import Path

import pytest
import torch

from ppq2l.arch import build_model
from ppq2l.config import get_config
from ppq2l.convert.official_checkpoints import convert_checkpoint
from ppq2l.engine.checkpoint import load_model_weights

from conftest import REPO

ZOO = REPO / "configs" / "MultiLabelCOCO" / "Query2Label"
# Small models with the zoo configs' structure: Swin-L's layout at a quarter of the width and
# depth (window 6 at 192 px: shifted windows in the first three stages, none in the last, as at
# 384 px with window 12); CvT-w24's three stages, class token in the last.
SWIN = {"embed_dim": 16, "depths": [2, 2, 2, 2], "num_heads": [1, 1, 2, 2], "window_size": 6,
        "img_size": 192}
CVT = {"dims": [16, 32, 48], "depths": [1, 1, 2], "heads": [1, 2, 3]}
SOURCE_ENV = "PPQ2L_Q2L_SOURCE"


def swin_q2l(size=SWIN):
    """Q2L_SwinL_384's model with the Swin of `size`, random weights, eval mode."""
    arch = get_config(ZOO / "Q2L_SwinL_384.yaml", ["Arch.backbone.pretrained=false"])["Arch"]
    arch["backbone"].update({key: value for key, value in size.items()})
    arch.update(hidden_dim=size["embed_dim"] * 8, dim_feedforward=64)
    torch.manual_seed(0)
    return build_model(arch).eval()


def cvt_q2l(size=CVT):
    """Q2L_CvT_w24_384's model with the CvT of `size`, random weights and norms, eval mode."""
    arch = get_config(ZOO / "Q2L_CvT_w24_384.yaml", ["Arch.backbone.pretrained=false"])["Arch"]
    arch["backbone"].update(size)
    arch.update(hidden_dim=size["dims"][-1], dim_feedforward=64)
    torch.manual_seed(0)
    model = build_model(arch).eval()
    perturb_norms(model)
    return model


def perturb_norms(module):
    """Norm layers away from their identity initialisation, so a misplaced one shows."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("running_mean") or name.endswith("norm.bias") or ".bn.bias" in name:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif tensor.dim() == 1 and (name.endswith("norm.weight") or ".bn.weight" in name
                                        or re.search(r"norm\d\.weight$", name)):
                tensor.copy_(1 + torch.randn(tensor.shape, generator=generator) * 0.1)


def head_logits(model, features):
    """The Query2Label head of `model` on backbone `features` [B, C, h, w]."""
    features = model.input_proj(features)
    decoded, _ = model.transformer(features, model.query_embed.weight,
                                   model.position_embedding(features))
    return model.fc(decoded[-1])


def save_official(weights, path):
    """A checkpoint as main_mlc.py saves it: DistributedDataParallel keys under state_dict."""
    torch.save({"state_dict": {"module." + key: value for key, value in weights.items()},
                "epoch": 3, "best_mAP": 0.5}, path)


def converted(model_factory, official_path, tmp_path):
    """A fresh model of `model_factory` with the converted weights of `official_path`."""
    target = model_factory()
    convert_checkpoint("q2l", official_path, target, tmp_path / "converted.pth")
    fresh = model_factory()
    with torch.no_grad():
        for parameter in fresh.parameters():
            parameter.zero_()
    load_model_weights(fresh, tmp_path / "converted.pth")
    return fresh.eval()


# ------------------------------------------------------------------ Microsoft's Swin formulas
def microsoft_relative_position_index(window):
    """Swin's relative_position_index buffer for a window x window window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    flat = coords.flatten(1)
    relative = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    relative[:, :, 0] += window - 1
    relative[:, :, 1] += window - 1
    relative[:, :, 0] *= 2 * window - 1
    return relative.sum(-1)


def microsoft_attn_mask(resolution, window, shift):
    """Swin's attn_mask buffer of a shifted-window block on a resolution x resolution map."""
    mask = torch.zeros(1, resolution, resolution, 1)
    count = 0
    for rows in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for columns in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            mask[:, rows, columns, :] = count
            count += 1
    windows = mask.view(1, resolution // window, window, resolution // window, window, 1)
    windows = windows.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window)
    difference = windows.unsqueeze(1) - windows.unsqueeze(2)
    return difference.masked_fill(difference != 0, -100.0).masked_fill(difference == 0, 0.0)


def microsoft_swin_blocks(size):
    """(stage, block, window, shift, resolution) of each block as Microsoft's Swin builds them:
    a stage whose map is no larger than the window uses one window, unshifted."""
    resolution = size["img_size"] // 4
    for stage, depth in enumerate(size["depths"]):
        window = min(size["window_size"], resolution)
        for block in range(depth):
            shift = 0 if resolution <= size["window_size"] or block % 2 == 0 else window // 2
            yield stage, block, window, shift, resolution
        resolution //= 2


def microsoft_layout(model, size=SWIN):
    """`model`'s weights as the official Query2Label checkpoint of a Swin holds them."""
    weights = {}
    for key, value in model.state_dict().items():
        if key.startswith("backbone.body."):
            key = "backbone.0." + re.sub(r"layers\.(\d+)\.downsample",
                                         lambda match: f"layers.{int(match[1]) - 1}.downsample",
                                         key.removeprefix("backbone.body."))
        weights[key] = value.clone()
    for stage, block, window, shift, resolution in microsoft_swin_blocks(size):
        prefix = f"backbone.0.layers.{stage}.blocks.{block}."
        weights[prefix + "attn.relative_position_index"] = microsoft_relative_position_index(window)
        if shift:
            weights[prefix + "attn_mask"] = microsoft_attn_mask(resolution, window, shift)
    return weights


def test_an_official_swin_checkpoint_converts_to_the_same_logits(tmp_path):
    model = swin_q2l()
    official = microsoft_layout(model)
    assert "backbone.0.layers.0.downsample.reduction.weight" in official  # Microsoft's placement
    assert any(key.endswith("attn_mask") for key in official)
    save_official(official, tmp_path / "checkpoint.pkl")
    images = torch.randn(2, 3, 192, 192)
    ours = converted(swin_q2l, tmp_path / "checkpoint.pkl", tmp_path)
    with torch.no_grad():
        assert torch.equal(ours(images), model(images))
    # what the conversion leaves to timm is what Microsoft's Swin stored: the buffers it drops ...
    body = ours.backbone.body
    for stage, block, window, _, resolution in microsoft_swin_blocks(SWIN):
        layer = body.layers[stage].blocks[block]
        assert torch.equal(layer.attn.relative_position_index.view(window ** 2, window ** 2),
                           official[f"backbone.0.layers.{stage}.blocks.{block}.attn.relative_position_index"])
        # the zoo's strict_img_size: False makes timm compute the mask per input, for its size
        mask = layer.get_attn_mask(torch.zeros(1, resolution, resolution, 1))
        stored = official.get(f"backbone.0.layers.{stage}.blocks.{block}.attn_mask")
        assert (mask is None and stored is None) or torch.equal(mask, stored), (stage, block)
    # ... and the order of the merged patches, so the reduction weights need no permutation
    merge = body.layers[1].downsample
    tokens = torch.randn(2, 8, 8, 16)  # timm: [B, H, W, C]
    parts = [tokens[:, 0::2, 0::2], tokens[:, 1::2, 0::2], tokens[:, 0::2, 1::2], tokens[:, 1::2, 1::2]]
    with torch.no_grad():  # Microsoft: x0, x1, x2, x3
        torch.testing.assert_close(merge(tokens), merge.reduction(merge.norm(torch.cat(parts, -1))),
                                   rtol=0, atol=0)


def test_an_official_cvt_checkpoint_converts_to_the_same_logits(tmp_path):
    model = cvt_q2l()
    official = {("backbone.0." + key.removeprefix("backbone.body.") if key.startswith("backbone.body.")
                 else key): value.clone() for key, value in model.state_dict().items()}
    assert "backbone.0.stage2.cls_token" in official and "backbone.0.norm.weight" in official
    save_official(official, tmp_path / "checkpoint.pkl")
    images = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(converted(cvt_q2l, tmp_path / "checkpoint.pkl", tmp_path)(images), model(images))


# ------------------------------------------------------------- against the official modules
def official_source(relative):
    """A module file of the official Query2Label source, or a skip that says how to get it."""
    root = os.environ.get(SOURCE_ENV)
    if not root:
        pytest.skip(f"set {SOURCE_ENV} to a checkout of github.com/SlongLiu/query2labels to compare "
                    f"with its own Swin and CvT modules")
    path = Path(root) / relative
    if not path.is_file():
        pytest.skip(f"{SOURCE_ENV}={root} has no {relative}")
    return path


def load_official_module(relative, name, monkeypatch):
    """Import an official module file under `name`; its `utils.slconfig` import (CvT: config
    files only, unused here) is stubbed."""
    path = official_source(relative)
    stub = types.ModuleType("utils.slconfig")
    stub.SLConfig = None
    monkeypatch.setitem(sys.modules, "utils", types.ModuleType("utils"))
    monkeypatch.setitem(sys.modules, "utils.slconfig", stub)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def official_swin(module, size):
    """The official Swin (lib/models/swin_transformer.py) as build_backbone makes it, headless."""
    torch.manual_seed(3)
    swin = module.SwinTransformer(img_size=size["img_size"], embed_dim=size["embed_dim"],
                                  depths=size["depths"], num_heads=size["num_heads"],
                                  window_size=size["window_size"], num_classes=80)
    del swin.avgpool, swin.head
    perturb_norms(swin)
    return swin.eval()


def official_cvt(module, size):
    """The official CvT (lib/models/cls_cvt) with cvt-w24-384x384.yaml's settings at `size`,
    headless and returning the patch map, as Query2Label's build_backbone makes it."""
    stages = len(size["dims"])
    spec = {"NUM_STAGES": stages, "PATCH_SIZE": [7, 3, 3], "PATCH_STRIDE": [4, 2, 2],
            "PATCH_PADDING": [2, 1, 1], "DIM_EMBED": size["dims"], "NUM_HEADS": size["heads"],
            "DEPTH": size["depths"], "MLP_RATIO": [4.0] * stages, "ATTN_DROP_RATE": [0.0] * stages,
            "DROP_RATE": [0.0] * stages, "DROP_PATH_RATE": [0.0, 0.0, 0.3], "QKV_BIAS": [True] * stages,
            "CLS_TOKEN": [False, False, True], "QKV_PROJ_METHOD": ["dw_bn"] * stages,
            "KERNEL_QKV": [3] * stages, "PADDING_KV": [1] * stages, "STRIDE_KV": [2] * stages,
            "PADDING_Q": [1] * stages, "STRIDE_Q": [1] * stages}
    torch.manual_seed(3)
    cvt = module.ConvolutionalVisionTransformer(
        in_chans=3, num_classes=80, act_layer=module.QuickGELU,
        norm_layer=partial(module.LayerNorm, eps=1e-5), init="trunc_norm", spec=spec)
    del cvt.head
    cvt.cls_token = False
    perturb_norms(cvt)
    return cvt.eval()


def official_parity(official, ours_factory, image_size, tmp_path):
    """Max abs differences (features, logits) between the official backbone under a head and the
    converted ppq2l model, on two unlike images."""
    head = ours_factory()
    weights = {"backbone.0." + key: value for key, value in official.state_dict().items()}
    weights.update({key: value for key, value in head.state_dict().items()
                    if not key.startswith("backbone.")})
    save_official(weights, tmp_path / "checkpoint.pkl")
    ours = converted(ours_factory, tmp_path / "checkpoint.pkl", tmp_path)
    generator = torch.Generator().manual_seed(5)
    images = torch.stack([torch.randn(3, image_size, image_size, generator=generator),
                          torch.rand(3, image_size, image_size, generator=generator) * 4 - 2])
    with torch.no_grad():
        features = official.forward_features(images)
        expected = head_logits(ours, features)
        return ((ours.backbone(images) - features).abs().max().item(),
                (ours(images) - expected).abs().max().item(), expected.abs().max().item())


def test_official_swin_module_converts_within_1e4(tmp_path, monkeypatch):
    module = load_official_module("lib/models/swin_transformer.py", "official_swin", monkeypatch)
    features, logits, scale = official_parity(official_swin(module, SWIN), swin_q2l,
                                              SWIN["img_size"], tmp_path)
    assert features <= 1e-4 and logits <= 1e-4 and scale > 0.1, (features, logits, scale)


def test_official_cvt_module_converts_within_1e4(tmp_path, monkeypatch):
    pytest.importorskip("einops", reason="the official CvT imports einops")
    pytest.importorskip("scipy", reason="the official CvT imports scipy")
    module = load_official_module("lib/models/cls_cvt/cls_cvt.py", "official_cvt", monkeypatch)
    features, logits, scale = official_parity(official_cvt(module, CVT), cvt_q2l, 128, tmp_path)
    assert features <= 1e-4 and logits <= 1e-4 and scale > 0.1, (features, logits, scale)
