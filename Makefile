# One-command entry points; see README.md.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
DEMO_ROOT := dataset/demo_shapes
DEMO_CONFIG := configs/quick_start/Q2L_demo_shapes.yaml
DEMO_OUTPUT := output/Q2L_demo_shapes

.PHONY: venv demo demo-data test clean-demo

venv: $(STAMP)

# Re-installs only when a requirements file changed since the last install.
$(STAMP): requirements.txt requirements-test.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-test.txt
	touch $(STAMP)

demo-data: venv
	$(PY) tools/make_demo_dataset.py --root $(DEMO_ROOT)
	$(PY) ppq2l/utils/create_coco_multilabel_lists.py --dataset_dir $(DEMO_ROOT) \
		--image_dir train2017 --anno_path annotations/instances_train2017.json \
		--save_name multilabel_train_list --save_label_name
	$(PY) ppq2l/utils/create_coco_multilabel_lists.py --dataset_dir $(DEMO_ROOT) \
		--image_dir val2017 --anno_path annotations/instances_val2017.json \
		--save_name multilabel_val_list

demo: demo-data
	$(PY) tools/train.py -c $(DEMO_CONFIG)
	$(PY) tools/eval.py -c $(DEMO_CONFIG) -o Global.pretrained_model=$(DEMO_OUTPUT)/best_model.pth

test: venv
	$(PY) -m pytest -q

clean-demo:
	rm -rf $(DEMO_ROOT) $(DEMO_OUTPUT)
