"""PositionEmbeddingSine: DETR's formula at any feature size, caching, dtype and export safety."""
import math

import pytest
import torch

from ppq2l.arch.position_encoding import PositionEmbeddingSine
from ppq2l.errors import ConfigError


def reference_value(channel, row, column, height, width, feats, temperature=10000.0,
                    scale=2 * math.pi, normalize=True):
    """One element of DETR's sine encoding: channels [0, feats) encode the row, the rest the
    column; even channels are sines, odd ones cosines of the same frequency."""
    axis_channel = channel % feats
    position, length = (row + 1, height) if channel < feats else (column + 1, width)
    if normalize:
        position = position / (length + 1e-6) * scale
    angle = position / temperature ** (2 * (axis_channel // 2) / feats)
    return math.sin(angle) if axis_channel % 2 == 0 else math.cos(angle)


@pytest.mark.parametrize("height,width", [(3, 5), (7, 2)])
def test_matches_the_per_element_formula_for_non_square_maps(height, width):
    feats = 8
    encoding = PositionEmbeddingSine(feats)(torch.zeros(2, 16, height, width))
    assert encoding.shape == (1, 2 * feats, height, width)
    expected = torch.tensor([[[reference_value(c, y, x, height, width, feats)
                               for x in range(width)] for y in range(height)]
                             for c in range(2 * feats)])
    torch.testing.assert_close(encoding[0], expected.float(), atol=1e-5, rtol=0)


def test_unnormalized_positions_use_raw_indices():
    feats = 4
    encoding = PositionEmbeddingSine(feats, normalize=False)(torch.zeros(1, 8, 2, 3))
    assert encoding[0, 0, 1, 2].item() == pytest.approx(math.sin(2.0), abs=1e-6)
    assert encoding[0, feats + 1, 0, 2].item() == pytest.approx(math.cos(3.0), abs=1e-6)


def test_cache_reuses_per_size_and_matches_a_fresh_computation():
    module = PositionEmbeddingSine(16)
    first = module(torch.zeros(1, 32, 4, 6))
    again = module(torch.randn(3, 32, 4, 6))
    other = module(torch.zeros(1, 32, 6, 4))
    assert again is first
    assert other.shape == (1, 32, 6, 4)
    torch.testing.assert_close(first, module.encode(4, 6), atol=0, rtol=0)
    torch.testing.assert_close(other, module.encode(6, 4), atol=0, rtol=0)
    assert not torch.equal(other.transpose(-1, -2), first)  # rows and columns are not swapped


def test_cache_is_bounded():
    module = PositionEmbeddingSine(4, max_cached_sizes=2)
    for size in (1, 2, 3, 4):
        module(torch.zeros(1, 8, size, size))
    assert len(module._cache) == 2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dtype_follows_the_features(dtype):
    module = PositionEmbeddingSine(8)
    encoding = module(torch.zeros(1, 16, 3, 4, dtype=dtype))
    assert encoding.dtype == dtype
    torch.testing.assert_close(encoding, module.encode(3, 4).to(dtype), atol=0, rtol=0)


@pytest.mark.parametrize("feats", [3, 0, 2.0])
def test_num_pos_feats_must_be_even(feats):
    with pytest.raises(ConfigError, match=r"^PositionEmbeddingSine: num_pos_feats must be .*even"):
        PositionEmbeddingSine(feats)


def test_exported_encoding_follows_the_input_size():
    module = PositionEmbeddingSine(4)
    sizes = {2: torch.export.Dim("height", min=2, max=64),
             3: torch.export.Dim("width", min=2, max=64)}
    exported = torch.export.export(module, (torch.zeros(1, 8, 2, 3),),
                                   dynamic_shapes={"features": sizes})
    torch.testing.assert_close(exported.module()(torch.zeros(1, 8, 5, 4)), module.encode(5, 4))
    assert not module._cache  # exporting must not freeze a cached constant into the graph
