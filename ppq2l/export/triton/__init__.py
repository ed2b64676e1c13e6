"""A Triton Inference Server model repository for an exported model: the ONNX model on the
onnxruntime backend, python-backend `preprocess` (encoded image bytes -> the model's input, with
ppq2l's own transforms) and `postprocess` (scores -> per-class thresholds -> labels as JSON)
models, and an ensemble tying them so that a client sends image bytes and gets labels.

`model_config` writes the config.pbtxt texts, `repository` the folder, `python_models` holds the
python-backend models (their model.py files import them, so the server's Python needs ppq2l
installed). None of them imports torch."""
