"""Sharded datasets: tools/make_shards.py writes any dataset as webdataset tar shards with a
manifest; a ShardedDataset epoch holds the same samples as the folder dataset, in an order drawn
from (seed, epoch) that does not depend on the loader workers; a resumed epoch continues at its
batch; processes split the samples, each read once; URLs open through fsspec; damaged or
mismatched shards are clear errors."""
import json
import shutil
import tarfile

import cv2
import numpy as np
import pytest
import torch

from ppq2l.commands.make_shards import make_shards
from ppq2l.data import build_dataloader
from ppq2l.data import sharded_dataset as sharded_module
from ppq2l.data.dataset_check import check_datasets
from ppq2l.data.shard_sampler import ShardSampler
from ppq2l.data.sharded_dataset import ShardedDataset
from ppq2l.errors import ConfigError, DataError

CLASS_NUM = 6
NUM_IMAGES = 23
OPS = [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": 8}},
       {"NormalizeImage": {"scale": "1.0/255.0", "order": ""}}, {"ToCHWImage": None}]


def identity(labels):
    """Sample i is labelled with the binary digits of i + 1 in its first five classes."""
    rows = np.asarray(labels)[:, :5].astype(np.int64)
    return (rows * (1 << np.arange(5))).sum(axis=1) - 1


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    rows = []
    for number in range(NUM_IMAGES):
        name = f"img{number:02d}.{'png' if number % 2 else 'jpg'}"
        cv2.imwrite(str(root / name), np.random.default_rng(number).integers(0, 256, (10, 12, 3), dtype=np.uint8))
        labels = [(number + 1) >> bit & 1 for bit in range(5)] + [-1 if number % 3 == 0 else number % 2]
        rows.append(f"{name}\t{','.join(map(str, labels))}")
    (root / "list.txt").write_text("\n".join(rows) + "\n")
    return root


def config(folder, dataset=None, batch_size=4, shuffle=True, workers=0):
    dataset = dataset or {"name": "MultiLabelListDataset", "image_root": str(folder),
                          "cls_label_path": str(folder / "list.txt"), "transform_ops": OPS}
    section = {"dataset": dataset, "sampler": {"batch_size": batch_size, "shuffle": shuffle, "drop_last": False},
               "loader": {"num_workers": workers}}
    return {"Arch": {"class_num": CLASS_NUM}, "DataLoader": {"Train": section, "Eval": section}}


@pytest.fixture(scope="module")
def shards(folder, tmp_path_factory):
    output = tmp_path_factory.mktemp("shards")
    summary = make_shards(config(folder), "Train", str(output), samples_per_shard=5, seed=1)
    assert summary == {"manifest": str(output / "shards.json"), "num_samples": 23, "num_shards": 5}
    return output


def sharded(shards, **extra):
    return {"name": "ShardedDataset", "shards": str(shards / "shards.json"), "transform_ops": OPS, **extra}


def epoch(loader, number, skip=0):
    loader.set_epoch(number, skip)
    return [(images.clone(), targets.clone()) for images, targets in loader]


def test_the_shards_hold_every_sample_with_its_bytes_and_labels(folder, shards):
    manifest = json.loads((shards / "shards.json").read_text())
    assert [entry["count"] for entry in manifest["shards"]] == [5, 5, 5, 5, 3]
    assert manifest["label_counts"]["unknown"] == [0, 0, 0, 0, 0, 8]
    with tarfile.open(shards / "train-000000.tar") as tar:
        names = tar.getnames()
    assert names[:2] == ["0000000000.jpg", "0000000000.json"] or names[:2] == ["0000000000.json", "0000000000.png"]
    dataset = ShardedDataset(shards / "shards.json", OPS, CLASS_NUM)
    order = np.random.default_rng(1).permutation(NUM_IMAGES)  # the order make_shards wrote them in
    for index in (0, 7, 22):
        data, labels, source = dataset.raw_sample(index)
        original = order[index]
        suffix = "png" if original % 2 else "jpg"
        assert data == (folder / f"img{original:02d}.{suffix}").read_bytes()
        assert identity(labels[None])[0] == original and f"line {original + 1} of" in source


@pytest.mark.parametrize("workers", [0, 2])
def test_an_epoch_holds_the_folder_samples_in_a_worker_independent_order(folder, shards, workers):
    folder_loader = build_dataloader(config(folder)["DataLoader"]["Train"], "Train", CLASS_NUM, seed=5)
    shard_loader = build_dataloader(config(folder, sharded(shards, shuffle_window=6, readers=2),
                                           workers=workers)["DataLoader"]["Train"], "Train", CLASS_NUM, seed=5)
    assert len(shard_loader) == len(folder_loader) == 6
    for number in (1, 2):
        ours, theirs = epoch(shard_loader, number), epoch(folder_loader, number)
        key = lambda batches: sorted((int(i), image.numpy().tobytes(), row.tolist())  # noqa: E731
                                     for images, targets in batches
                                     for i, image, row in zip(identity(targets), images, targets))
        assert key(ours) == key(theirs)  # the same images with the same labels, unknown ones too
    single = build_dataloader(config(folder, sharded(shards, shuffle_window=6, readers=2))["DataLoader"]["Train"],
                              "Train", CLASS_NUM, seed=5)
    for (images, targets), (images_b, targets_b) in zip(epoch(shard_loader, 3), epoch(single, 3)):
        assert torch.equal(images, images_b) and torch.equal(targets, targets_b)
    first, second = (torch.cat([t for _, t in epoch(single, n)]) for n in (3, 4))
    assert not torch.equal(first, second)  # another epoch, another order


def test_a_resumed_epoch_continues_at_its_batch(folder, shards):
    section = config(folder, sharded(shards, shuffle_window=4, readers=2))["DataLoader"]["Train"]
    whole = epoch(build_dataloader(section, "Train", CLASS_NUM, seed=9), 4)
    resumed = epoch(build_dataloader(section, "Train", CLASS_NUM, seed=9), 4, skip=2)
    assert len(resumed) == len(whole) - 2
    for (images, targets), (images_b, targets_b) in zip(whole[2:], resumed):
        assert torch.equal(images, images_b) and torch.equal(targets, targets_b)


def test_processes_split_the_samples_and_workers_keep_to_their_windows(shards):
    manifest = ShardedDataset(shards / "shards.json", OPS, CLASS_NUM).manifest
    for world, pad, expected in ((2, True, 24), (3, False, 23), (4, True, 24)):
        parts = [ShardSampler(manifest, True, 0, 2, 4, 2, num_replicas=world, rank=rank, pad=pad).shard()[0]
                 for rank in range(world)]
        everything = np.concatenate(parts)
        assert len(everything) == expected and set(everything.tolist()) == set(range(NUM_IMAGES))
        assert len({len(part) for part in parts}) == (1 if pad else 2)
    sampler = ShardSampler(manifest, True, 0, batch_size=2, shuffle_window=4, readers=4)
    indices, _, windows, owners = sampler.plan()
    batch_owner = owners[::2]
    for worker in range(2):  # with 2 workers (dividing readers=4), batch j goes to worker j % 2
        assert set(batch_owner[worker::2][:-2] % 2) == {worker}
    assert sorted(indices.tolist()) == list(range(NUM_IMAGES)) and len(windows) == 6


def test_every_sample_is_read_once_per_epoch(folder, shards, monkeypatch):
    reads = []
    original = sharded_module.read_piece

    def counting(url, first, start, stop):
        for index, sample in original(url, first, start, stop):
            reads.append(index)
            yield index, sample

    monkeypatch.setattr(sharded_module, "read_piece", counting)
    section = config(folder, sharded(shards, shuffle_window=4, readers=2))["DataLoader"]["Train"]
    loader = build_dataloader(section, "Train", CLASS_NUM, seed=2)
    epoch(loader, 1)
    assert sorted(reads) == list(range(NUM_IMAGES))


def test_shards_open_from_an_fsspec_url(folder, shards):
    import fsspec

    memory = fsspec.filesystem("memory")
    for path in shards.iterdir():
        memory.pipe(f"/ppq2l-test/{path.name}", path.read_bytes())
    dataset = ShardedDataset("memory://ppq2l-test/shards.json", OPS, CLASS_NUM)
    assert dataset.image_paths[6] == "memory://ppq2l-test/train-000001.tar#0000000006"
    local = ShardedDataset(shards / "shards.json", OPS, CLASS_NUM)
    assert dataset.raw_sample(6)[:2][0] == local.raw_sample(6)[0]


def test_check_dataset_reads_every_shard(folder, shards):
    report, _ = check_datasets(config(folder, sharded(shards)))
    assert report["num_images"] == 23 and report["problems"] == []
    assert report["unknown_per_class"] == [0, 0, 0, 0, 0, 8] and report["images_without_labels"] == 0


def test_damaged_or_mismatched_shards_are_clear_errors(folder, shards, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(shards, copy)
    with pytest.raises(ConfigError, match="have 6 classes but class_num is 7"):
        ShardedDataset(copy / "shards.json", OPS, 7)
    (copy / "train-000001.tar").replace(copy / "train-000002.tar")
    dataset = ShardedDataset(copy / "shards.json", OPS, CLASS_NUM)
    with pytest.raises(DataError, match=r"train-000001.tar not found"):
        dataset.raw_sample(5)
    with pytest.raises(DataError, match=r"train-000002.tar: sample 0 has key 0000000005, but the manifest puts "
                                        r"sample 0000000010 there"):
        dataset.raw_sample(10)
    (copy / "train-000003.tar").write_bytes((shards / "train-000003.tar").read_bytes()[:3000])
    with pytest.raises(DataError, match=r"train-000003.tar (is damaged or truncated|ends after)"):
        dataset.raw_sample(19)
    (copy / "list.json").write_text("{}")
    with pytest.raises(DataError, match="is not a shard manifest written by tools/make_shards.py"):
        ShardedDataset(copy / "list.json", OPS, CLASS_NUM)
    with pytest.raises(ConfigError, match="already a ShardedDataset"):
        make_shards(config(folder, sharded(shards)), "Train", str(tmp_path / "again"))


def test_an_image_gone_after_the_check_is_the_same_error_for_make_shards_and_the_list_dataset(
        folder, tmp_path, monkeypatch):
    from ppq2l.data import dataloader

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    build = dataloader.build_dataset

    def build_then_lose_an_image(*args, **kwargs):
        dataset = build(*args, **kwargs)  # the listed files are checked here
        (copy / "img03.png").unlink(missing_ok=True)
        return dataset

    monkeypatch.setattr(dataloader, "build_dataset", build_then_lose_an_image)
    message = f"cannot read image {copy / 'img03.png'} (line 4 of {copy / 'list.txt'}): No such file or directory"
    with pytest.raises(DataError) as made:
        make_shards(config(copy), "Train", str(tmp_path / "shards"), seed=None)
    (copy / "img03.png").write_bytes((folder / "img03.png").read_bytes())
    dataset = build_then_lose_an_image(config(copy)["DataLoader"]["Train"]["dataset"], CLASS_NUM, "dataset")
    with pytest.raises(DataError) as read:
        dataset.get(3)
    assert str(made.value) == str(read.value) == message


def test_locate_gives_the_shard_and_the_position_of_indices_and_arrays():
    from ppq2l.data.shard_reader import locate

    offsets = np.array([0, 5, 10, 13])
    shard, position = locate(offsets, np.array([0, 4, 5, 9, 12]))
    assert shard.tolist() == [0, 0, 1, 1, 2] and position.tolist() == [0, 4, 0, 4, 2]
    assert tuple(int(value) for value in locate(offsets, 10)) == (2, 0)
