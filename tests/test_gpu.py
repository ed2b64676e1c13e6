"""The CUDA paths: a mixed-precision channels-last training epoch with normalisation on the device,
the float16 ONNX export with its parity check, and the onnxruntime CUDA provider running the
export. Marked `gpu`: skipped (with the reason) where torch sees no CUDA device."""
import numpy as np
import pytest
import torch

from ppq2l.arch import build_model
from ppq2l.commands.export import main as export_main
from ppq2l.config import get_config
from ppq2l.engine import Trainer
from ppq2l.engine.checkpoint import save_checkpoint
from ppq2l.export.onnx_export import FP16_TOLERANCE

from conftest import DEMO_CONFIG, tiny_overrides

pytestmark = pytest.mark.gpu


def cuda_overrides(root, folder, *extra):
    return tiny_overrides(root, folder / "output") + [
        "Global.device=cuda", "Global.image_shape=[3, 64, 64]",
        f"Global.save_inference_dir={folder / 'inference'}", *extra]


def test_amp_channels_last_epoch_on_cuda_with_device_normalisation(tiny_demo_root, tmp_path):
    overrides = cuda_overrides(tiny_demo_root, tmp_path, "Global.epochs=1", "Global.channels_last=True",
                               "AMP={dtype: float16}", "DataLoader.Train.loader.normalize_on_device=True",
                               "DataLoader.Eval.loader.normalize_on_device=True")
    trainer = Trainer(get_config(DEMO_CONFIG, overrides))
    assert next(trainer.model.parameters()).is_cuda
    best = trainer.train()
    assert best["value"] is not None and np.isfinite(best["value"])
    assert (tmp_path / "output" / "best_model.pth").is_file()


@pytest.fixture
def cuda_export(tiny_demo_root, tmp_path):
    overrides = cuda_overrides(tiny_demo_root, tmp_path, "Global.export_fp16=True")
    config = get_config(DEMO_CONFIG, overrides)
    torch.manual_seed(0)
    save_checkpoint({"model": build_model(config["Arch"]).state_dict()}, tmp_path / "weights.pth")
    arguments = ["-c", str(DEMO_CONFIG)]
    for override in overrides + [f"Global.pretrained_model={tmp_path / 'weights.pth'}"]:
        arguments += ["-o", override]
    return tmp_path / "inference", export_main(arguments)


def test_float16_export_matches_torch_on_cuda(cuda_export):
    folder, summary = cuda_export
    assert (folder / "model.onnx").is_file()
    assert all(difference <= FP16_TOLERANCE for difference in summary["max_abs_diff"].values())


def test_onnxruntime_cuda_provider_runs_the_export(cuda_export, tiny_demo_root):
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider (install onnxruntime-gpu)")
    from ppq2l.predict import Predictor

    folder, _ = cuda_export
    predictor = Predictor(folder, use_gpu=True)
    assert "CUDAExecutionProvider" in predictor.backend.device  # not a silent CPU fallback
    images = sorted((tiny_demo_root / "val2017").iterdir())[:4]
    scores = predictor.scores(images)
    assert scores.shape == (4, 12) and np.isfinite(scores).all()


@pytest.mark.parametrize("name", ["AsymmetricLoss", "BCEWithLogitsLoss"])
def test_selective_unknown_labels_do_not_wait_for_the_device(name):
    from ppq2l.loss import build_loss

    loss = build_loss([{name: {"unknown": "selective", "reduction": "mean",
                               "selective": {"likelihood_topk": 3, "prior": [0.1, 0.6] * 6}}}])
    generator = torch.Generator(device="cuda").manual_seed(0)
    logits = torch.randn(64, 12, device="cuda", generator=generator).half().requires_grad_()
    targets = torch.randint(-1, 2, (64, 12), device="cuda", generator=generator).to(torch.int8)
    loss(logits, targets)  # the first call moves the prior to the device, once
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
    try:
        value = loss(logits, targets)["loss"]
        value.backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert value.dtype == torch.float32 and torch.isfinite(value) and torch.isfinite(logits.grad).all()
