"""CutMix mixes labels by the area it really pastes, keeps both label sets in union mode and
repeats with the same generator."""
import numpy as np
import pytest
import torch

from ppq2l.data.batch_transforms import CutMix, build_batch_transforms
from ppq2l.errors import ConfigError


def constant_batch(batch: int = 4, size: int = 20):
    """Image i is filled with i + 1 and labelled with class i only."""
    images = torch.arange(1, batch + 1, dtype=torch.float32).view(batch, 1, 1, 1).expand(batch, 3, size, size)
    return images.contiguous(), torch.eye(batch)


@pytest.mark.parametrize("seed", range(25))
def test_cutmix_mix_weights_labels_by_the_pasted_area(seed):
    images, targets = constant_batch()
    mixed, mixed_targets = CutMix(alpha=1.0, prob=1.0)(images, targets, np.random.default_rng(seed))
    area = images.shape[-1] * images.shape[-2]
    for i in range(4):
        values = mixed[i, 0].unique()
        pasted = [int(v) - 1 for v in values if int(v) != i + 1]
        assert len(pasted) <= 1 and torch.equal(mixed[i, 0], mixed[i, 2])
        if not pasted:
            assert torch.allclose(mixed_targets[i], targets[i])
            continue
        partner = pasted[0]
        fraction = float((mixed[i, 0] == partner + 1).sum()) / area
        assert mixed_targets[i, partner] == pytest.approx(fraction)
        assert mixed_targets[i, i] == pytest.approx(1 - fraction)
        assert float(mixed_targets[i].sum()) == pytest.approx(1.0)
    assert torch.equal(images, constant_batch()[0])  # the input batch is left as it was


def test_cutmix_union_keeps_both_label_sets_and_prob_zero_is_identity():
    images, targets = constant_batch()
    rng = np.random.default_rng(0)
    mixed, union = CutMix(prob=1.0, label_mode="union")(images, targets, rng)
    changed = [i for i in range(4) if not torch.equal(mixed[i], images[i])]
    assert changed
    for i in changed:
        partner = int(mixed[i, 0][mixed[i, 0] != i + 1][0]) - 1
        assert union[i, i] == 1 and union[i, partner] == 1 and union[i].sum() == 2
    same, same_targets = CutMix(prob=0.0)(images, targets, rng)
    assert same is images and same_targets is targets


@pytest.mark.parametrize("label_mode", ["mix", "union"])
@pytest.mark.parametrize("seed", range(6))
def test_cutmix_keeps_unknown_labels_unknown(label_mode, seed):
    """An extra class 4 is unknown in images 0 and 1 and negative in 2 and 3: every image mixed
    with an unknown one has it unknown (-1), never a mixed 0, and a pair of negatives stays 0;
    class i, positive in image i, stays positive in union mode and weighs its area in mix mode."""
    images, eye = constant_batch()
    targets = torch.cat([eye, torch.tensor([[-1.0], [-1.0], [0.0], [0.0]])], dim=1)
    mixed, mixed_targets = CutMix(prob=1.0, label_mode=label_mode)(images, targets, np.random.default_rng(seed))
    area = images.shape[-1] * images.shape[-2]
    for i in range(4):
        pasted = [int(v) - 1 for v in mixed[i, 0].unique() if int(v) != i + 1]
        partner = pasted[0] if pasted else i
        unknown = i < 2 or partner < 2
        assert mixed_targets[i, 4] == (-1 if unknown else 0), (i, partner, mixed_targets)
        kept = float((mixed[i, 0] == i + 1).sum()) / area
        assert mixed_targets[i, i] == pytest.approx(1.0 if label_mode == "union" else kept)


def test_cutmix_is_reproducible_and_validated():
    images, targets = constant_batch()
    first = CutMix(prob=1.0)(images, targets, np.random.default_rng(9))
    second = CutMix(prob=1.0)(images, targets, np.random.default_rng(9))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    with pytest.raises(ConfigError, match=r"^DataLoader\.Train\.batch_transform_ops\.0 CutMix: label_mode must "
                                          r"be one of mix, union, got 'max'"):
        build_batch_transforms([{"CutMix": {"label_mode": "max"}}], "DataLoader.Train.batch_transform_ops")
    with pytest.raises(ConfigError, match=r"^DataLoader\.Train\.batch_transform_ops\.0: unknown batch "
                                          r"transform 'Cutmix'\. Did you mean 'CutMix'\?"):
        build_batch_transforms([{"Cutmix": None}], "DataLoader.Train.batch_transform_ops")
    with pytest.raises(ConfigError, match=r"^alpha must be a finite number > 0 \(of the Beta distribution\), got 0$"):
        CutMix(alpha=0)
    with pytest.raises(ConfigError, match=r"^prob must be a number from 0 to 1, got True$"):
        CutMix(prob=True)
