"""Transformer: official parameter names, data flow against a sequence-first reference,
pre-norm, initialization and options."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ppq2l.arch.transformer import Transformer
from ppq2l.errors import ConfigError

D_MODEL, HEADS, FF = 32, 4, 48


def small_transformer(**kwargs):
    options = dict(d_model=D_MODEL, nhead=HEADS, num_encoder_layers=1, num_decoder_layers=2,
                   dim_feedforward=FF)
    options.update(kwargs)
    return Transformer(**options)


def official_keys(enc_layers, dec_layers, decoder_self_attn=False, encoder_norm=False):
    """Transformer state-dict keys of the official Query2Label for these settings."""
    attention = ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    def weights_and_biases(prefix, modules):
        return {f"{prefix}.{m}.{p}" for m in modules for p in ("weight", "bias")}

    keys = set()
    for i in range(enc_layers):
        keys |= {f"encoder.layers.{i}.self_attn.{a}" for a in attention}
        keys |= weights_and_biases(f"encoder.layers.{i}", ["linear1", "linear2", "norm1", "norm2"])
    for i in range(dec_layers):
        keys |= {f"decoder.layers.{i}.multihead_attn.{a}" for a in attention}
        keys |= weights_and_biases(f"decoder.layers.{i}", ["linear1", "linear2", "norm2", "norm3"])
        if decoder_self_attn:
            keys |= {f"decoder.layers.{i}.self_attn.{a}" for a in attention}
            keys |= weights_and_biases(f"decoder.layers.{i}", ["norm1"])
    keys |= {"decoder.norm.weight", "decoder.norm.bias"}
    if encoder_norm:
        keys |= {"encoder.norm.weight", "encoder.norm.bias"}
    return keys


def test_state_dict_keys_equal_the_official_ones():
    assert set(small_transformer().state_dict()) == official_keys(1, 2)
    kept = small_transformer(rm_self_attn_dec=False, rm_first_self_attn=False)
    assert set(kept.state_dict()) == official_keys(1, 2, decoder_self_attn=True)
    assert set(small_transformer(normalize_before=True, num_encoder_layers=2).state_dict()) \
        == official_keys(2, 2, encoder_norm=True)


def test_first_and_later_self_attention_flags_are_separate():
    model = small_transformer(num_decoder_layers=3, rm_first_self_attn=False)
    has_self_attn = [hasattr(layer, "self_attn") for layer in model.decoder.layers]
    assert has_self_attn == [True, False, False]


def seq_first_attention(module, query, key, value):
    """The same attention weights run through a sequence-first nn.MultiheadAttention."""
    reference = nn.MultiheadAttention(D_MODEL, HEADS, batch_first=False)
    reference.load_state_dict(module.state_dict())
    return reference(query, key, value)[0]


def reference_forward(model, src, queries, pos):
    """Post-norm Query2Label transformer written out in [sequence, batch, channel] layout."""
    batch = src.shape[0]
    memory = src.flatten(2).permute(2, 0, 1)
    pos = pos.flatten(2).permute(2, 0, 1).expand(-1, batch, -1)
    for layer in model.encoder.layers:
        attended = seq_first_attention(layer.self_attn, memory + pos, memory + pos, memory)
        memory = layer.norm1(memory + attended)
        memory = layer.norm2(memory + layer.linear2(F.relu(layer.linear1(memory))))
    query_pos = queries.unsqueeze(1).expand(-1, batch, -1)
    tgt = torch.zeros_like(query_pos)
    for layer in model.decoder.layers:
        attended = seq_first_attention(layer.multihead_attn, tgt + query_pos, memory + pos, memory)
        tgt = layer.norm2(tgt + attended)
        tgt = layer.norm3(tgt + layer.linear2(F.relu(layer.linear1(tgt))))
    return model.decoder.norm(tgt).transpose(0, 1), memory.permute(1, 2, 0).reshape(src.shape)


def test_matches_a_sequence_first_reference():
    torch.manual_seed(0)
    model = small_transformer(num_encoder_layers=2).eval()
    src, queries = torch.randn(3, D_MODEL, 2, 5), torch.randn(6, D_MODEL)
    pos = torch.randn(1, D_MODEL, 2, 5)
    with torch.no_grad():
        decoded, memory = model(src, queries, pos)
        expected_decoded, expected_memory = reference_forward(model, src, queries, pos)
    assert decoded.shape == (1, 3, 6, D_MODEL)
    torch.testing.assert_close(decoded[0], expected_decoded, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(memory, expected_memory, atol=1e-5, rtol=1e-5)


def test_without_encoder_layers_memory_is_the_input():
    model = small_transformer(num_encoder_layers=0).eval()
    src = torch.randn(2, D_MODEL, 3, 3)
    _, memory = model(src, torch.randn(4, D_MODEL), torch.randn(1, D_MODEL, 3, 3))
    assert torch.equal(memory, src)


@pytest.mark.parametrize("keep_self_attn", [False, True])
def test_pre_norm_forward_and_backward(keep_self_attn):
    torch.manual_seed(0)
    model = small_transformer(normalize_before=True, rm_self_attn_dec=not keep_self_attn,
                              rm_first_self_attn=not keep_self_attn)
    src = torch.randn(2, D_MODEL, 3, 4, requires_grad=True)
    queries = torch.randn(5, D_MODEL, requires_grad=True)
    decoded, _ = model(src, queries, torch.randn(1, D_MODEL, 3, 4))
    decoded.square().mean().backward()
    assert torch.isfinite(decoded).all()
    assert src.grad.abs().sum() > 0 and queries.grad.abs().sum() > 0
    assert model.encoder.norm.weight.grad is not None
    assert all(p.grad is not None for p in model.decoder.parameters())


def test_intermediate_outputs_are_stacked_per_layer():
    model = small_transformer(num_decoder_layers=3, return_intermediate_dec=True).eval()
    last_only = small_transformer(num_decoder_layers=3).eval()
    last_only.load_state_dict(model.state_dict())
    inputs = (torch.randn(2, D_MODEL, 2, 2), torch.randn(4, D_MODEL), torch.randn(1, D_MODEL, 2, 2))
    decoded, _ = model(*inputs)
    assert decoded.shape == (3, 2, 4, D_MODEL)
    torch.testing.assert_close(decoded[-1:], last_only(*inputs)[0])
    assert not torch.allclose(decoded[0], decoded[-1])


def test_weight_matrices_are_xavier_uniform():
    torch.manual_seed(0)
    linear1 = small_transformer().encoder.layers[0].linear1.weight
    bound = math.sqrt(6 / (D_MODEL + FF))
    # Linear's default init has bound 1/sqrt(fan_in) ~ 0.177, below 0.95 * xavier's 0.274.
    assert linear1.abs().max() <= bound and linear1.abs().max() > 0.95 * bound


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="activation"):
        small_transformer(activation="swish")
    with pytest.raises(ConfigError, match="divisible"):
        small_transformer(nhead=5)
