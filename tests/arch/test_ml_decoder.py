"""ML-Decoder head: official key names and shapes, outputs against a plain per-group reference
computation, the group/query rules, frozen queries, zero-shot word vectors and errors."""
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from ppq2l.arch import build_model
from ppq2l.arch.ml_decoder import MLDecoderHead, resolve_num_queries
from ppq2l.errors import CheckpointError, ConfigError, DataError
from ppq2l.optimizer import build_optimizer

CHANNELS, EMBED, HEADS, FEEDFORWARD = 24, 16, 4, 32
TINY_BACKBONE = {"name": "resnet10t", "pretrained": False, "channels": [8, 16, 32, 64]}


def official_state_dict(class_num, groups, generator, word_dim=None):
    """Random tensors under the official MLDecoder module's key names and shapes."""
    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.3

    layer = "decoder.layers.0."
    state = {"decoder.embed_standart.weight": rand(EMBED, CHANNELS), "decoder.embed_standart.bias": rand(EMBED),
             layer + "norm1.weight": 1 + rand(EMBED), layer + "norm1.bias": rand(EMBED),
             layer + "multihead_attn.in_proj_weight": rand(3 * EMBED, EMBED),
             layer + "multihead_attn.in_proj_bias": rand(3 * EMBED),
             layer + "multihead_attn.out_proj.weight": rand(EMBED, EMBED),
             layer + "multihead_attn.out_proj.bias": rand(EMBED),
             layer + "linear1.weight": rand(FEEDFORWARD, EMBED), layer + "linear1.bias": rand(FEEDFORWARD),
             layer + "linear2.weight": rand(EMBED, FEEDFORWARD), layer + "linear2.bias": rand(EMBED),
             layer + "norm2.weight": 1 + rand(EMBED), layer + "norm2.bias": rand(EMBED),
             layer + "norm3.weight": 1 + rand(EMBED), layer + "norm3.bias": rand(EMBED)}
    if word_dim is None:
        factor = math.ceil(class_num / groups)
        state.update({"decoder.query_embed.weight": rand(groups, EMBED),
                      "decoder.duplicate_pooling": rand(groups, EMBED, factor),
                      "decoder.duplicate_pooling_bias": rand(class_num)})
    else:
        state.update({"decoder.duplicate_pooling": rand(EMBED, 1),
                      "decoder.duplicate_pooling_bias": rand(1),
                      "wordvec_proj.weight": rand(EMBED, word_dim), "wordvec_proj.bias": rand(EMBED)})
    return state


def reference_logits(state, features, class_num, queries):
    """The ML-Decoder forward pass written out step by step, one image, one query at a time."""
    layer = "decoder.layers.0."

    def norm(x, name):
        return F.layer_norm(x, (EMBED,), state[layer + name + ".weight"], state[layer + name + ".bias"])

    outputs = []
    for feature in features:
        tokens = feature.reshape(CHANNELS, -1).T
        memory = torch.relu(tokens @ state["decoder.embed_standart.weight"].T + state["decoder.embed_standart.bias"])
        w_q, w_k, w_v = state[layer + "multihead_attn.in_proj_weight"].chunk(3)
        b_q, b_k, b_v = state[layer + "multihead_attn.in_proj_bias"].chunk(3)
        keys, values = memory @ w_k.T + b_k, memory @ w_v.T + b_v
        head_dim = EMBED // HEADS
        logits = []
        for k, query in enumerate(queries):
            query = norm(query + query, "norm1")  # the residual that replaces self-attention
            projected = query @ w_q.T + b_q
            heads = []
            for h in range(HEADS):
                part = slice(h * head_dim, (h + 1) * head_dim)
                weights = torch.softmax(keys[:, part] @ projected[part] / math.sqrt(head_dim), dim=0)
                heads.append(weights @ values[:, part])
            attended = torch.cat(heads) @ state[layer + "multihead_attn.out_proj.weight"].T \
                + state[layer + "multihead_attn.out_proj.bias"]
            query = norm(query + attended, "norm2")
            hidden = torch.relu(query @ state[layer + "linear1.weight"].T + state[layer + "linear1.bias"])
            query = norm(query + hidden @ state[layer + "linear2.weight"].T + state[layer + "linear2.bias"], "norm3")
            pooling = state["decoder.duplicate_pooling"]
            logits.append(query @ (pooling[k] if pooling.dim() == 3 else pooling))
        outputs.append(torch.cat(logits)[:class_num] + state["decoder.duplicate_pooling_bias"])
    return torch.stack(outputs)


@pytest.mark.parametrize("class_num, groups", [(10, 4), (6, 6), (7, 1)])
def test_official_weights_give_the_reference_logits(class_num, groups):
    generator = torch.Generator().manual_seed(class_num)
    state = official_state_dict(class_num, groups, generator)
    head = MLDecoderHead(class_num, CHANNELS, groups, EMBED, HEADS, FEEDFORWARD).eval()
    assert set(head.state_dict()) == set(state)
    head.load_state_dict(state, strict=True)
    features = torch.randn(3, CHANNELS, 5, 4, generator=generator)
    with torch.no_grad():
        logits = head(features)
    expected = reference_logits(state, features, class_num, state["decoder.query_embed.weight"])
    assert logits.shape == (3, class_num)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    # tokens [B, N, C] are the flattened feature map
    with torch.no_grad():
        tokens = features.flatten(2).transpose(1, 2)
        torch.testing.assert_close(head(tokens), logits)


def test_zero_shot_head_matches_reference_and_follows_its_word_vectors(tmp_path):
    generator = torch.Generator().manual_seed(1)
    word_vectors = torch.randn(5, 12, generator=generator)
    state = official_state_dict(5, None, generator, word_dim=12)
    head = MLDecoderHead(5, CHANNELS, None, EMBED, HEADS, FEEDFORWARD, word_vectors=word_vectors).eval()
    head.load_state_dict(state, strict=True)  # the word vectors are not part of the weights
    features = torch.randn(2, CHANNELS, 3, 3, generator=generator)
    queries = torch.relu(word_vectors @ state["wordvec_proj.weight"].T + state["wordvec_proj.bias"])
    with torch.no_grad():
        logits = head(features)
        torch.testing.assert_close(logits, reference_logits(state, features, 5, queries),
                                   atol=1e-5, rtol=1e-5)
        # unseen classes: any set of word vectors, each logit follows its own vector
        order = torch.tensor([4, 0, 2, 1, 3])
        head.set_word_vectors(torch.cat([word_vectors[order], word_vectors[:2]]))
        swapped = head(features)
    assert swapped.shape == (2, 7)
    torch.testing.assert_close(swapped[:, :5], logits[:, order], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(swapped[:, 5:], logits[:, :2], atol=1e-5, rtol=1e-5)


def test_zero_shot_arch_reads_npy_and_pt_files(tmp_path):
    vectors = np.random.default_rng(0).standard_normal((6, 10)).astype(np.float32)
    np.save(tmp_path / "words.npy", vectors)
    torch.save(torch.from_numpy(vectors), tmp_path / "words.pt")
    outputs = []
    for name in ("words.npy", "words.pt"):
        torch.manual_seed(0)
        model = build_model({"name": "MLDecoder", "class_num": 6, "backbone": TINY_BACKBONE,
                             "decoder_embedding": 16, "nheads": 2, "dim_feedforward": 32,
                             "word_vectors": str(tmp_path / name)}).eval()
        assert "head.decoder.query_embed" not in model.state_dict()
        torch.testing.assert_close(model.head.decoder.query_embed, torch.from_numpy(vectors))
        with torch.no_grad():
            outputs.append(model(torch.ones(1, 3, 64, 64)))
    assert outputs[0].shape == (1, 6)
    torch.testing.assert_close(outputs[0], outputs[1])
    with pytest.raises(ConfigError, match=r"one row per class, shape \[4, word_dim\], got \(6, 10\)"):
        build_model({"name": "MLDecoder", "class_num": 4, "backbone": TINY_BACKBONE,
                     "word_vectors": str(tmp_path / "words.npy")})
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="cannot read word vectors"):
        build_model({"name": "MLDecoder", "class_num": 6, "backbone": TINY_BACKBONE,
                     "word_vectors": str(tmp_path / "bad.npy")})
    with pytest.raises(ConfigError, match="does not exist"):
        build_model({"name": "MLDecoder", "class_num": 6, "backbone": TINY_BACKBONE,
                     "word_vectors": str(tmp_path / "missing.pt")})


class _Payload:
    pass


def test_word_vector_file_with_python_objects_is_refused_by_the_weights_reader(tmp_path):
    torch.save({"vectors": torch.zeros(6, 10), "extra": _Payload()}, tmp_path / "words.pt")
    with pytest.raises(CheckpointError) as info:
        build_model({"name": "MLDecoder", "class_num": 6, "backbone": TINY_BACKBONE,
                     "word_vectors": str(tmp_path / "words.pt")})
    message = str(info.value)
    assert message.startswith(f"cannot read word vector file {tmp_path / 'words.pt'}: it holds "
                              f"Python objects that a weights-only load refuses")
    assert "save the vectors as one [classes, word_dim] tensor" in message
    assert "weights_only=False" not in message


def test_number_of_queries_rules():
    assert resolve_num_queries(None, 80) == 80
    assert resolve_num_queries(None, 9605) == 100  # official default caps at 100
    # -1 is the official train.py default: min(100, classes) (ml_decoder.py: 100 if < 0, clipped
    # to num_classes), not one query per class, which has its own spelling
    assert resolve_num_queries(-1, 9605) == 100
    assert resolve_num_queries(-1, 80) == 80
    assert resolve_num_queries("per_class", 9605) == 9605
    assert resolve_num_queries(200, 9605) == 200
    with pytest.raises(ConfigError, match="cannot exceed class_num .80.; use at most 80, or per_class"):
        resolve_num_queries(81, 80)
    with pytest.raises(ConfigError, match=r"num_of_groups must be a positive integer \(or -1: min\(100, "
                                          r"class_num\) as the official code; per_class: one query per class\)"):
        resolve_num_queries(0, 80)
    with pytest.raises(ConfigError, match=r"got 'all'"):
        resolve_num_queries("all", 80)
    head = MLDecoderHead(9605, 32, 200, decoder_embedding=16, nheads=2)
    assert head.decoder.duplicate_pooling.shape == (200, 16, 49)  # ceil(9605 / 200)
    assert head.decoder.duplicate_pooling_bias.shape == (9605,)
    assert head(torch.randn(2, 32, 3, 3)).shape == (2, 9605)


def test_queries_stay_frozen_and_the_rest_trains():
    model = build_model({"name": "MLDecoder", "class_num": 5, "backbone": TINY_BACKBONE,
                         "decoder_embedding": 16, "nheads": 2, "dim_feedforward": 32, "num_of_groups": 2})
    queries = model.head.decoder.query_embed.weight
    assert not queries.requires_grad
    optimizer, _ = build_optimizer({"name": "Adam", "weight_decay": 1e-4,
                                    "lr": {"name": "Constant", "learning_rate": 1e-2}},
                                   model, steps_per_epoch=1, epochs=1)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(queries) not in optimized and id(model.head.decoder.duplicate_pooling) in optimized
    before_queries, before_pooling = queries.clone(), model.head.decoder.duplicate_pooling.detach().clone()
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    optimizer.step()
    torch.testing.assert_close(queries, before_queries, rtol=0, atol=0)
    assert not torch.equal(model.head.decoder.duplicate_pooling, before_pooling)


def test_configuration_errors_name_the_key():
    with pytest.raises(ConfigError, match="initial_num_features is 2048 but backbone 'resnet10t' gives 64"):
        build_model({"name": "MLDecoder", "class_num": 5, "backbone": TINY_BACKBONE,
                     "initial_num_features": 2048})
    with pytest.raises(ConfigError, match="decoder_embedding \\(10\\) must be divisible by Arch.nheads \\(4\\)"):
        MLDecoderHead(5, 8, None, decoder_embedding=10, nheads=4)
    with pytest.raises(ConfigError, match="does not apply to a zero-shot"):
        MLDecoderHead(5, 8, 2, decoder_embedding=8, nheads=2, word_vectors=torch.randn(5, 8))
