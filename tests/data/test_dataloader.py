"""build_dataloader: batches of the right shape and type, the same seed gives the same batches
(whatever the number of workers), epochs differ, and config mistakes name the key path."""
import copy

import cv2
import numpy as np
import pytest
import torch

from ppq2l.data import build_dataloader
from ppq2l.data.dataloader import SeededSampler
from ppq2l.data.device_normalize import DeviceLoader
from ppq2l.errors import ConfigError, DataError

CLASS_NUM = 4
NUM_IMAGES = 10


@pytest.fixture(scope="module")
def list_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("list_data")
    rng = np.random.default_rng(0)
    rows = []
    for number in range(NUM_IMAGES):
        cv2.imwrite(str(root / f"{number}.png"), rng.integers(0, 256, (20, 28, 3), dtype=np.uint8))
        labels = [int(number % CLASS_NUM == k or (number + 1) % CLASS_NUM == k) for k in range(CLASS_NUM)]
        rows.append(f"{number}.png\t{','.join(map(str, labels))}")
    (root / "train.txt").write_text("\n".join(rows) + "\n")
    return root


def train_section(root, **loader):
    return {
        "dataset": {
            "name": "MultiLabelListDataset", "image_root": str(root), "cls_label_path": str(root / "train.txt"),
            "transform_ops": [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": 16}},
                              {"RandomFlip": {}}, {"RandAugment": {"magnitude": 9}},
                              {"NormalizeImage": {"scale": "1.0/255.0", "order": ""}}, {"ToCHWImage": None}],
        },
        "batch_transform_ops": [{"CutMix": {"alpha": 1.0, "prob": 1.0}}],
        "sampler": {"name": "DistributedBatchSampler", "batch_size": 4, "shuffle": True, "drop_last": True},
        "loader": {"num_workers": 0, "pin_memory": True, "persistent_workers": True, "prefetch_factor": 2,
                   **loader},
    }


def all_batches(loader):
    return [(images.clone(), targets.clone()) for images, targets in loader]


def test_batches_have_model_shapes_and_types(list_root):
    loader = build_dataloader(train_section(list_root), "Train", CLASS_NUM, seed=1)
    assert len(loader) == NUM_IMAGES // 4 and loader.batch_size == 4
    images, targets = next(iter(loader))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32
    assert targets.shape == (4, CLASS_NUM) and targets.dtype == torch.float32
    assert not images.is_pinned()  # pin_memory only with CUDA
    assert loader.dataset.labels.shape == (NUM_IMAGES, CLASS_NUM)  # the dataset's attributes reach through


def test_same_seed_same_batches_with_or_without_workers(list_root):
    first = all_batches(build_dataloader(train_section(list_root), "Train", CLASS_NUM, seed=7))
    again = all_batches(build_dataloader(train_section(list_root), "Train", CLASS_NUM, seed=7))
    workers = all_batches(build_dataloader(train_section(list_root, num_workers=2), "Train", CLASS_NUM, seed=7))
    other = all_batches(build_dataloader(train_section(list_root), "Train", CLASS_NUM, seed=8))
    for run in (again, workers):
        for (images, targets), (images_b, targets_b) in zip(first, run):
            assert torch.equal(images, images_b) and torch.equal(targets, targets_b)
    assert not torch.equal(first[0][0], other[0][0])


def test_epochs_differ_and_set_epoch_repeats_one(list_root):
    loader = build_dataloader(train_section(list_root), "Train", CLASS_NUM, seed=3)
    loader.set_epoch(1)
    epoch_one = all_batches(loader)
    epoch_two = all_batches(loader)  # without set_epoch the next pass is the next epoch
    assert not torch.equal(epoch_one[0][0], epoch_two[0][0])
    resumed = build_dataloader(train_section(list_root), "Train", CLASS_NUM, seed=3)
    resumed.set_epoch(2)
    assert torch.equal(all_batches(resumed)[0][0], epoch_two[0][0])


def test_eval_loader_keeps_order_and_every_sample(list_root):
    section = train_section(list_root)
    del section["batch_transform_ops"]
    section["sampler"] = {"batch_size": 4, "shuffle": False}
    loader = build_dataloader(section, "Eval", CLASS_NUM)
    targets = torch.cat([batch_targets for _, batch_targets in loader])
    assert targets.dtype == torch.int8
    assert len(loader) == 3 and torch.equal(targets, torch.from_numpy(loader.dataset.labels))


def test_sampler_shards_across_processes():
    shards = [list(SeededSampler(10, shuffle=True, seed=0, num_replicas=3, rank=rank)) for rank in range(3)]
    assert [len(shard) for shard in shards] == [4, 4, 4]
    indices = [index for shard in shards for index, _ in shard]
    assert set(indices) == set(range(10))  # two repeated to pad 10 to 12
    assert len({seed for shard in shards for _, seed in shard}) == 10


@pytest.mark.parametrize("path,value,message", [
    ("datasets", {}, r"DataLoader\.Train\.datasets: unknown key\. Did you mean 'dataset'"),
    ("sampler.batchsize", 4, r"DataLoader\.Train\.sampler\.batchsize: unknown key.*'batch_size'"),
    ("loader.num_worker", 1, r"DataLoader\.Train\.loader\.num_worker: unknown key.*'num_workers'"),
    ("sampler.name", "RandomSampler",
     r"^DataLoader\.Train\.sampler\.name must be one of DistributedBatchSampler, got 'RandomSampler'"),
    ("sampler.name", "BatchSampler", r"^DataLoader\.Train\.sampler\.name: BatchSampler \(each process reads "
                                     r"every sample\) is not available.*write name: DistributedBatchSampler"),
    ("sampler.batch_size", 0, r"^DataLoader\.Train\.sampler\.batch_size must be a positive integer, got 0$"),
    ("sampler.shuffle", "yes", r"^DataLoader\.Train\.sampler\.shuffle must be true or false, got 'yes'$"),
    ("loader.num_workers", -1, r"^DataLoader\.Train\.loader\.num_workers must be an integer >= 0, got -1$"),
    ("loader.prefetch_factor", 1.5, r"loader\.prefetch_factor must be a positive integer, got 1\.5"),
    ("dataset", {"image_root": "x"}, r"^DataLoader\.Train\.dataset: expected a mapping with a name, e\.g\. "),
    ("loader.use_shared_memory", False, r"use_shared_memory"),
    ("dataset.class_num", 5, r"dataset\.class_num is 5 but the model has 4"),
    ("dataset.label_ratio", True, r"DataLoader\.Train\.dataset MultiLabelListDataset: unknown keyword 'label_ratio'"),
    ("dataset.name", "CocoDatset", r"^DataLoader\.Train\.dataset\.name: unknown dataset 'CocoDatset'.*CocoDataset"),
])
def test_config_mistakes_name_the_key(list_root, path, value, message):
    section = train_section(list_root)
    node = section
    *parents, last = path.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    with pytest.raises(ConfigError, match=message):
        build_dataloader(section, "Train", CLASS_NUM)


def test_sampler_name_is_optional_and_only_names_the_sampler_there_is(list_root):
    section = train_section(list_root)
    named = build_dataloader(copy.deepcopy(section), "Train", CLASS_NUM, seed=2)
    del section["sampler"]["name"]
    unnamed = build_dataloader(section, "Train", CLASS_NUM, seed=2)
    for (a, s), (b, t) in zip(all_batches(named), all_batches(unnamed)):
        assert torch.equal(a, b) and torch.equal(s, t)


def test_structural_mistakes(list_root):
    section = train_section(list_root)
    with pytest.raises(ConfigError, match=r"Eval\.batch_transform_ops"):
        build_dataloader(copy.deepcopy(section), "Eval", CLASS_NUM)
    broken = copy.deepcopy(section)
    broken["dataset"]["transform_ops"][1] = {"ResizeImage": {"size": 16, "interpolation": "cubic"}}
    with pytest.raises(ConfigError, match=r"Train\.dataset\.transform_ops\.1 ResizeImage: interpolation"):
        build_dataloader(broken, "Train", CLASS_NUM)
    broken = copy.deepcopy(section)
    del broken["dataset"]["cls_label_path"]
    with pytest.raises(ConfigError, match="needs cls_label_path"):
        build_dataloader(broken, "Train", CLASS_NUM)
    too_big = copy.deepcopy(section)
    too_big["sampler"]["batch_size"] = NUM_IMAGES + 1
    with pytest.raises(DataError, match="make no batch"):
        build_dataloader(too_big, "Train", CLASS_NUM)


def test_pipeline_without_chw_float_output_is_explained(list_root):
    section = train_section(list_root)
    section["dataset"]["transform_ops"] = [{"DecodeImage": None}, {"ResizeImage": {"size": 16}}]
    loader = build_dataloader(section, "Train", CLASS_NUM)
    with pytest.raises(ConfigError, match=r"transform_ops: samples must come out as float CHW"):
        next(iter(loader))


# ------------------------------------------------------------------- normalize_on_device
@pytest.mark.parametrize("order, workers", [("hwc", 0), ("chw", 2)])
def test_normalize_on_device_gives_the_same_model_input_bit_for_bit(list_root, order, workers):
    # The loader hands over uint8 batches (CutMix included); DeviceLoader normalises them after the
    # transfer into exactly the float32 batches of the loader that normalises in its workers.
    section = train_section(list_root, num_workers=workers)
    if order == "chw":
        ops = section["dataset"]["transform_ops"]
        ops[-2:] = [{"ToCHWImage": None}, {"NormalizeImage": {"scale": "1.0/255.0", "order": "chw"}}]
    plain = build_dataloader(copy.deepcopy(section), "Train", CLASS_NUM, seed=3)
    section["loader"]["normalize_on_device"] = True
    on_device = build_dataloader(section, "Train", CLASS_NUM, seed=3)
    handed_over = all_batches(on_device)
    assert all(images.dtype == torch.uint8 for images, _ in handed_over)
    on_device.set_epoch(0)
    delivered = DeviceLoader(on_device, torch.device("cpu"), torch.channels_last)
    assert len(delivered) == len(on_device) == NUM_IMAGES // 4
    batches = 0
    for (expected, targets), (images, labels), (uint8, _) in zip(all_batches(plain), delivered, handed_over):
        assert images.dtype == torch.float32 and images.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(images, expected) and torch.equal(labels, targets)
        assert images.shape == uint8.shape
        batches += 1
    assert batches == NUM_IMAGES // 4


def test_device_loader_only_moves_batches_that_need_no_normalisation(list_root):
    loader = build_dataloader(train_section(list_root), "Train", CLASS_NUM, seed=3)
    loader.set_epoch(1)
    expected = all_batches(loader)
    loader.set_epoch(1)
    moved = list(DeviceLoader(loader, torch.device("cpu")))
    assert len(moved) == len(expected) and all(
        torch.equal(a, b) and torch.equal(s, t) for (a, s), (b, t) in zip(moved, expected))
    batch = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)  # any iterable of batches, e.g. a list
    (images, targets), = DeviceLoader([(batch, "targets")], torch.device("cpu"), torch.channels_last)
    assert images.dtype == torch.uint8 and images.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(images, batch) and targets == "targets"


def test_normalize_on_device_needs_normalisation_last(list_root):
    section = train_section(list_root, normalize_on_device=True)
    section["dataset"]["transform_ops"] = section["dataset"]["transform_ops"][:-2] + [{"ToCHWImage": None}]
    with pytest.raises(ConfigError, match=r"Train\.loader\.normalize_on_device needs .*ends with "
                                          r"RandAugment, ToCHWImage"):
        build_dataloader(section, "Train", CLASS_NUM)
    section = train_section(list_root, normalize_on_device="yes")
    with pytest.raises(ConfigError, match=r"loader\.normalize_on_device must be true or false, got 'yes'"):
        build_dataloader(section, "Train", CLASS_NUM)


def test_device_normalize_mistakes_are_config_errors_naming_the_pipeline(list_root):
    section = train_section(list_root, normalize_on_device=True)
    section["dataset"]["transform_ops"][-2] = {"NormalizeImage": {"mean": [0.5], "std": [0.5], "order": ""}}
    del section["batch_transform_ops"]
    loader = build_dataloader(section, "Train", CLASS_NUM)
    with pytest.raises(ConfigError, match=r"Train\.dataset\.transform_ops: NormalizeImage has mean/std for 1 "
                                          r"channels but the images have 3"):
        next(iter(DeviceLoader(loader, torch.device("cpu"))))
    images, _ = next(iter(loader))
    with pytest.raises(ConfigError, match=r"needs uint8 \[B, C, H, W\] batches.*float32"):
        loader.device_normalize(images.float())
