# One-command entry points; see README.md.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
DEMO_ROOT := dataset/demo_shapes
DEMO_CONFIG := configs/quick_start/Q2L_demo_shapes.yaml
DEMO_OUTPUT := output/Q2L_demo_shapes
DEMO_INFERENCE := inference/Q2L_demo_shapes
DEMO_VISUAL := $(DEMO_OUTPUT)/deploy_visual
# The deploy predictor's overlays of one val image (its grid when several labels fire), the kind of
# picture the README shows (docs/demo_attention.jpg; make demo never rewrites tracked files).
DEMO_PICTURE_IMAGE := 000001000003

.PHONY: venv demo demo-data test test-fast lint bench gpu-check clean-demo

venv: $(STAMP)

# Re-installs only when a requirements file or the package description changed since the last
# install. The package itself is installed in editable mode (no copy), which puts the ppq2l-*
# commands on the venv's PATH and lets tools/*.py import it from the checkout.
$(STAMP): requirements.txt requirements-test.txt deploy/triton/requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-test.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo-data: venv
	$(PY) tools/make_demo_dataset.py --root $(DEMO_ROOT) --num_train 4000 --num_val 500
	$(PY) ppq2l/utils/create_coco_multilabel_lists.py --dataset_dir $(DEMO_ROOT) \
		--image_dir train2017 --anno_path annotations/instances_train2017.json \
		--save_name multilabel_train_list --save_label_name
	$(PY) ppq2l/utils/create_coco_multilabel_lists.py --dataset_dir $(DEMO_ROOT) \
		--image_dir val2017 --anno_path annotations/instances_val2017.json \
		--save_name multilabel_val_list

demo: demo-data
	$(PY) tools/train.py -c $(DEMO_CONFIG) -o Global.overwrite=True  # make demo re-runs replace the last demo run
	$(PY) tools/eval.py -c $(DEMO_CONFIG) -o Global.pretrained_model=$(DEMO_OUTPUT)/best_model.pth \
		-o Eval.pointing_game=True
# per-class thresholds from the scores eval saved (no second pass of the model), then the report
# at them; export and infer pick them up (Infer.PostProcess.threshold: auto)
	$(PY) tools/calibrate.py -c $(DEMO_CONFIG) -o Global.pretrained_model=$(DEMO_OUTPUT)/best_model.pth
	$(PY) tools/report.py -c $(DEMO_CONFIG)
	$(PY) tools/export_model.py -c $(DEMO_CONFIG) -o Global.pretrained_model=$(DEMO_OUTPUT)/best_model.pth \
		-o Global.export_attention=True
	$(PY) deploy/python/predict_multilabel.py -c deploy/configs/inference_multilabel.yaml \
		-o Global.inference_model_dir=$(DEMO_INFERENCE) -o Global.infer_imgs=$(DEMO_ROOT)/val2017 \
		-o Global.save_path=$(DEMO_OUTPUT)/deploy_predictions.jsonl \
		-o Global.save_visual_dir=$(DEMO_VISUAL) > /dev/null
	@echo "deploy predictor, first records of $(DEMO_OUTPUT)/deploy_predictions.jsonl:"
	@head -n 3 $(DEMO_OUTPUT)/deploy_predictions.jsonl
	@echo "evaluation report: $(DEMO_OUTPUT)/report/report.html"
	@echo "per-label maps of every val image in $(DEMO_VISUAL)/, for example $(DEMO_VISUAL)/$(DEMO_PICTURE_IMAGE)/"

test: venv
	$(PY) -m pytest -q

# The suite without the tests marked slow (tools run as subprocesses, trainings), while you work.
test-fast: venv
	$(PY) -m pytest -q -m "not slow"

lint: venv
	$(VENV)/bin/ruff check .

# Speed benchmarks (tables, JSON in benchmarks/results/); defaults sized for < 15 min on 2 CPU cores.
bench: venv
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_metrics.py
	$(PY) benchmarks/bench_calibrate.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_infer.py -c $(DEMO_CONFIG)

# The one GPU check (about 8 min on one H100/H200; CPU part only without a GPU): benchmarks/results/gpu_check.json
gpu-check: venv
	bash benchmarks/gpu_check.sh

clean-demo:
	rm -rf $(DEMO_ROOT) $(DEMO_OUTPUT) $(DEMO_INFERENCE)
