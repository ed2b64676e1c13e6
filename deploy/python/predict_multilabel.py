"""Multi-label prediction with an exported ONNX model and onnxruntime, without torch: the
`ppq2l-deploy-predict` command from a checkout (see ppq2l/commands/deploy_predict.py).
python deploy/python/predict_multilabel.py -c deploy/configs/inference_multilabel.yaml \
    -o Global.infer_imgs=PATH_OR_DIR -o Global.inference_model_dir=DIR"""
import sys

from ppq2l.commands.deploy_predict import cli

if __name__ == "__main__":
    sys.exit(cli())
