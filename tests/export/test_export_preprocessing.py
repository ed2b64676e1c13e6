"""An exported model carries its Eval preprocessing with the resize backend, and the torch-free
predictor of the export folder hands the model the very arrays evaluation does (Pillow's resize,
not OpenCV's)."""
import numpy as np
from PIL import Image

from ppq2l.arch import build_model
from ppq2l.commands.export import main as export_main
from ppq2l.config import get_config
from ppq2l.data.transforms import build_transforms
from ppq2l.engine.checkpoint import save_checkpoint
from ppq2l.export.metadata import read_inference_yml
from ppq2l.predict import Predictor

from conftest import DEMO_CONFIG, tiny_overrides


def test_pil_resize_reaches_the_deploy_predictor_unchanged(tiny_demo_root, tmp_path):
    overrides = tiny_overrides(tiny_demo_root, tmp_path / "output") + [
        "DataLoader.Eval.dataset.transform_ops.ResizeImage.backend=pil",
        f"Global.save_inference_dir={tmp_path / 'inference'}", "Global.image_shape=[3, 64, 64]"]
    config = get_config(DEMO_CONFIG, overrides)
    save_checkpoint({"model": build_model(config["Arch"]).state_dict()}, tmp_path / "weights.pth")
    overrides.append(f"Global.pretrained_model={tmp_path / 'weights.pth'}")
    export_main(["-c", str(DEMO_CONFIG), *sum((["-o", o] for o in overrides), [])])

    metadata = read_inference_yml(tmp_path / "inference" / "inference.yml")
    assert metadata["preprocess"][1] == {"ResizeImage": {"size": 64, "backend": "pil"}}
    image_path = sorted((tiny_demo_root / "val2017").iterdir())[0]
    evaluation = build_transforms(config["DataLoader"]["Eval"]["dataset"]["transform_ops"])
    expected = evaluation(image_path.read_bytes())
    deployed = Predictor(tmp_path / "inference").preprocess(image_path)
    np.testing.assert_array_equal(deployed, expected)
    # and both are Pillow's antialiased resize of the decoded image, normalised
    pixels = np.asarray(Image.open(image_path).convert("RGB").resize((64, 64), Image.Resampling.BILINEAR))
    reference = (pixels / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(deployed, reference.transpose(2, 0, 1), atol=1e-5)
