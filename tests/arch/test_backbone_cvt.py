"""CvT backbone: shapes and stride, parameter names of the released Microsoft CvT weights, and
strict loading of a weight file carrying exactly those names."""
import pytest
import torch

from ppq2l.arch.backbone import build_backbone
from ppq2l.arch.cvt import CVT_SPECS, CvT
from ppq2l.errors import CheckpointError, ConfigError

TINY = {"arch": "cvt_w24", "dims": [8, 16, 24], "depths": [1, 1, 2], "heads": [1, 2, 3]}


def released_key_names(dims, depths, cls_stage):
    """The key names of a released CvT classification checkpoint, written out from the
    layout of the Microsoft CvT model (per stage: conv embedding, blocks; then norm and head)."""
    keys = []
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    for stage, depth in enumerate(depths):
        prefix = f"stage{stage}"
        keys += [f"{prefix}.patch_embed.proj.weight", f"{prefix}.patch_embed.proj.bias",
                 f"{prefix}.patch_embed.norm.weight", f"{prefix}.patch_embed.norm.bias"]
        if stage == cls_stage:
            keys.append(f"{prefix}.cls_token")
        for block in range(depth):
            b = f"{prefix}.blocks.{block}"
            keys += [f"{b}.norm1.weight", f"{b}.norm1.bias", f"{b}.norm2.weight", f"{b}.norm2.bias"]
            for part in "qkv":
                keys.append(f"{b}.attn.conv_proj_{part}.conv.weight")
                keys += [f"{b}.attn.conv_proj_{part}.bn.{name}" for name in bn]
                keys += [f"{b}.attn.proj_{part}.weight", f"{b}.attn.proj_{part}.bias"]
            keys += [f"{b}.attn.proj.weight", f"{b}.attn.proj.bias"]
            keys += [f"{b}.mlp.fc1.weight", f"{b}.mlp.fc1.bias",
                     f"{b}.mlp.fc2.weight", f"{b}.mlp.fc2.bias"]
    return keys + ["norm.weight", "norm.bias", "head.weight", "head.bias"]


@pytest.fixture(scope="module")
def tiny_cvt():
    return build_backbone({"name": "CvT", **TINY})


def test_last_stage_patch_tokens_come_out_at_stride_16(tiny_cvt):
    assert tiny_cvt.num_channels == 24 and tiny_cvt.stride == 16
    assert tiny_cvt(torch.randn(2, 3, 64, 96)).shape == (2, 24, 4, 6)


def test_parameter_names_are_the_released_ones_without_head(tiny_cvt):
    released = released_key_names(TINY["dims"], TINY["depths"], cls_stage=2)
    assert set(tiny_cvt.body.state_dict()) == set(released) - {"head.weight", "head.bias"}
    assert tiny_cvt.body.stage2.blocks[0].attn.conv_proj_k.conv.stride == (2, 2)
    assert tiny_cvt.body.stage0.patch_embed.proj.kernel_size == (7, 7)


def test_w24_has_the_published_size():
    backbone = CvT("cvt_w24")
    widths = [backbone.body.get_submodule(f"stage{i}").patch_embed.proj.out_channels
              for i in range(3)]
    depths = [len(backbone.body.get_submodule(f"stage{i}").blocks) for i in range(3)]
    heads = [backbone.body.get_submodule(f"stage{i}").blocks[0].attn.heads for i in range(3)]
    assert (widths, depths, heads) == ([192, 768, 1024], [2, 2, 20], [3, 12, 16])
    # 277M in the CvT paper, which includes the ~1M ImageNet-1k classifier left out here.
    assert 275e6 < sum(p.numel() for p in backbone.parameters()) < 277e6


def test_weight_file_with_released_names_loads_strictly(tiny_cvt, tmp_path):
    shapes = {key: value.shape for key, value in tiny_cvt.body.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key in released_key_names(TINY["dims"], TINY["depths"], cls_stage=2):
        shape = shapes.get(key, (1000, 24) if key == "head.weight" else (1000,)
                           if key == "head.bias" else (24,))
        state[key] = (torch.tensor(5) if key.endswith("num_batches_tracked")
                      else torch.randn(shape, generator=generator))
    torch.save(state, path := tmp_path / "cvt.pth")
    loaded = build_backbone({"name": "CvT", **TINY, "pretrained": str(path)})
    assert torch.equal(loaded.body.stage2.blocks[1].attn.proj_v.weight,
                       state["stage2.blocks.1.attn.proj_v.weight"])
    assert torch.equal(loaded.body.stage2.cls_token, state["stage2.cls_token"])
    assert torch.equal(loaded.body.norm.bias, state["norm.bias"])
    del state["stage1.blocks.0.mlp.fc1.bias"]
    state["stage1.blocks.0.mlp.fc3.bias"] = torch.zeros(64)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"missing \(1\): stage1\.blocks\.0\.mlp\.fc1\.bias"
                                              r".*unexpected \(1\): stage1\.blocks\.0\.mlp\.fc3"):
        build_backbone({"name": "CvT", **TINY, "pretrained": str(path)})


def test_class_token_does_not_leak_into_the_map(tiny_cvt):
    images = torch.randn(1, 3, 32, 32)
    before = tiny_cvt.eval()(images)
    with torch.no_grad():
        shift = torch.randn(1, 1, 24, generator=torch.Generator().manual_seed(1))
        tiny_cvt.body.stage2.cls_token.add_(shift)
    after = tiny_cvt(images)
    with torch.no_grad():
        tiny_cvt.body.stage2.cls_token.sub_(shift)
    # The class token is attended to, so the patch map changes, but its shape holds only patches.
    assert before.shape == after.shape == (1, 24, 2, 2) and not torch.allclose(before, after)


@pytest.mark.parametrize("kwargs, message", [
    ({"arch": "cvt_99"}, r"^Arch\.backbone CvT: arch must be one of cvt_13, cvt_21, cvt_w24, got 'cvt_99'"),
    ({"pretrained": True}, "no hub download"),
    ({**TINY, "heads": [3, 2, 3]}, "width 8 is not divisible by 3 heads"),
    ({**TINY, "depths": [1, 0, 1]},
     r"^Arch\.backbone CvT: depths must be a list of one or more positive integers"),
    ({**TINY, "drop_path_rate": 1.5}, r"^Arch\.backbone CvT: drop_path_rate must be a number in \[0, 1\)"),
])
def test_bad_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        build_backbone({"name": "CvT", **kwargs})


def test_map_passes_through_the_final_layernorm_as_official_query2label_uses_it(tiny_cvt):
    with torch.no_grad():
        features = tiny_cvt.eval()(torch.randn(1, 3, 32, 32))
    # Freshly initialised norm (weight 1, bias 0): every position has zero mean, unit variance.
    torch.testing.assert_close(features.mean(dim=1), torch.zeros(1, 2, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(features.var(dim=1, unbiased=False), torch.ones(1, 2, 2),
                               atol=1e-3, rtol=0)


@pytest.mark.parametrize("arch, rate", [("cvt_w24", 0.3), ("cvt_13", 0.1), ("cvt_21", 0.1)])
def test_stochastic_depth_is_the_released_configuration_s(arch, rate):
    # cvt-w24-384x384.yaml (Microsoft CvT, copied by Query2Label): DROP_PATH_RATE [0.0, 0.0, 0.3],
    # linspace(0, rate, depth) over the blocks of the last stage, none before it.
    spec = CVT_SPECS[arch]
    depth = spec.depths[-1]
    body = CvT(arch=arch, dims=[8, 16, 32], heads=[1, 2, 4]).body
    last = getattr(body, f"stage{len(spec.depths) - 1}").blocks
    rates = [block.drop_path.drop_prob if hasattr(block.drop_path, "drop_prob") else 0.0 for block in last]
    assert rates == pytest.approx([rate * index / (depth - 1) for index in range(depth)])
    for stage in range(len(spec.depths) - 1):
        blocks = getattr(body, f"stage{stage}").blocks
        assert all(isinstance(block.drop_path, torch.nn.Identity) for block in blocks)
    off = CvT(arch=arch, dims=[8, 16, 32], heads=[1, 2, 4], drop_path_rate=0.0).body
    blocks = getattr(off, f"stage{len(spec.depths) - 1}").blocks
    assert all(isinstance(block.drop_path, torch.nn.Identity) for block in blocks)
