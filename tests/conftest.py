"""Shared fixtures: a tiny demo dataset (generated, converted to list files) and its config."""
from pathlib import Path

import pytest

from ppq2l.config import get_config

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "configs" / "quick_start" / "Q2L_demo_shapes.yaml"


@pytest.fixture(scope="session")
def tiny_demo_root(tmp_path_factory) -> Path:
    """A demo dataset of 48 train and 24 val images with its list and label files."""
    from ppq2l.data.demo_shapes import generate_demo_dataset
    from ppq2l.utils.create_coco_multilabel_lists import create_multilabel_list

    root = tmp_path_factory.mktemp("demo_shapes")
    generate_demo_dataset(root, num_train=48, num_val=24, seed=3)
    create_multilabel_list(root, "train2017", "annotations/instances_train2017.json",
                           save_name="multilabel_train_list", save_label_name=True)
    create_multilabel_list(root, "val2017", "annotations/instances_val2017.json",
                           save_name="multilabel_val_list")
    return root


def tiny_overrides(root: Path, output_dir: Path) -> list[str]:
    """Overrides that point the demo config at a tiny dataset and make every step small and fast."""
    overrides = [f"Global.output_dir={output_dir}", "Global.device=cpu", "Global.epochs=2",
                 "Global.eval_interval=1", "Global.print_batch_step=1",
                 f"Infer.PostProcess.class_id_map_file={root / 'labels.txt'}",
                 "Arch.hidden_dim=32", "Arch.dim_feedforward=64", "Arch.nheads=2",
                 "Arch.backbone.channels=[8,16,32,64]"]
    for split, name in (("Train", "train"), ("Eval", "val")):
        overrides += [f"DataLoader.{split}.dataset.image_root={root}",
                      f"DataLoader.{split}.dataset.cls_label_path={root / f'multilabel_{name}_list.txt'}",
                      f"DataLoader.{split}.dataset.transform_ops.ResizeImage.size=64",
                      f"DataLoader.{split}.sampler.batch_size=16",
                      f"DataLoader.{split}.loader.num_workers=0"]
    return overrides


@pytest.fixture
def tiny_config(tiny_demo_root, tmp_path):
    """The demo config resolved against the tiny dataset, writing into a fresh folder."""
    return get_config(DEMO_CONFIG, tiny_overrides(tiny_demo_root, tmp_path / "output"))


def run_tool(script, *args, cwd=REPO, env=None, timeout=300):
    """Run a command-line tool as a user would, in a fresh Python process. `script` is a path
    relative to the repository (`tools/train.py`, `deploy/python/...`). PYTHONPATH names this
    checkout, so the package under test is the one imported even where another copy is installed."""
    import os
    import subprocess
    import sys

    environment = dict(os.environ, PYTHONPATH=str(REPO))
    environment.update(env or {})
    return subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd,
                          env=environment, capture_output=True, text=True, timeout=timeout)


def assert_user_error(result, *fragments, status=2):
    """`result` (a finished run_tool) ended as a user mistake should: exit `status`, no traceback,
    and an `error:` line on stderr that contains every one of `fragments`."""
    assert result.returncode == status, (result.returncode, result.stdout[-2000:], result.stderr[-4000:])
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-4000:]
    message = result.stderr[result.stderr.index("error: "):]
    for fragment in fragments:
        assert str(fragment) in message, (fragment, message)
    return message


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` are skipped, with the reason, where torch sees no CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
