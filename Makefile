# Every target builds the locked Python 3.10 environment first when it is missing
# (tools/ensure_env.sh: the locked packages cached per user, keyed by requirements/lock.txt,
# and this checkout's own .venv on top).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PY = "$$(tools/ensure_env.sh)/bin/python"

.PHONY: demo test test-fast lint env lock complexity classify-demo explore-demo bench backbone-grid seed-spread clean

# Where train_net looks for datasets: $DETECTRON2_DATASETS, as Detectron2 (default ./datasets).
DATASETS_DIR := $(or $(DETECTRON2_DATASETS),datasets)
SYNTH_VOC := $(DATASETS_DIR)/VOCsynth/VOC2012
# Generated ImageFolder classification data (10 classes of coloured shapes, 64x64).
SYNTH_IMAGEFOLDER := $(DATASETS_DIR)/synth_imagefolder
DEMO_CONFIG := configs/synth/atto_maskrcnn_synth.yaml
DEMO_OUTPUT := output/atto_maskrcnn_synth
# Training processes of the demo (Detectron2's launch with Gloo), one per core of a
# 2-core machine; the config's 4 images per iteration are split among them
# (1, 2 or 4 processes). The demo config trains on the CPU: GPUs are hidden from launch,
# which would otherwise start NCCL, for CUDA tensors only.
DEMO_PROCESSES ?= 2

# The main job on the embedded default: generate the VOC-layout synthetic data (once),
# train Atto-MaskRCNN (AttoNet-A) on it (resuming an interrupted run), evaluate APd/APm,
# print the complexity comparison with ResNet-50-FPN Mask R-CNN, and draw predictions
# on a few validation images into $(DEMO_OUTPUT)/visualized/.
demo: $(SYNTH_VOC)/ImageSets/Segmentation/val.txt
	CUDA_VISIBLE_DEVICES= $(PY) tools/train_net.py --config-file $(DEMO_CONFIG) \
		--num-gpus $(DEMO_PROCESSES) --resume OUTPUT_DIR $(DEMO_OUTPUT)
	$(PY) tools/analyze_complexity.py
	$(PY) tools/demo.py --config-file $(DEMO_CONFIG) --output $(DEMO_OUTPUT)/visualized/ --overwrite \
		--input $$(head -n 4 $(SYNTH_VOC)/ImageSets/Segmentation/val.txt \
		           | sed 's|.*|$(SYNTH_VOC)/JPEGImages/&.jpg|') \
		--opts MODEL.WEIGHTS $(DEMO_OUTPUT)/model_final.pth

# The lint (ruff, configured in pyproject.toml), the formatter's check (black) and every
# test; CI runs this target.
test: lint
	$(PY) -m pytest -q tests

lint:
	$(PY) -m ruff check .
	$(PY) -m black --check --quiet .

# The tests without the slow ones (training, processes, design search, export) and
# without the GPU ones: about a minute on 2 cores. `make test` runs them all.
test-fast:
	$(PY) -m pytest -q -m "not slow and not cuda" tests

# The generated data sets, made when absent; each marker file is written after all images.
$(SYNTH_VOC)/ImageSets/Segmentation/val.txt:
	$(PY) tools/make_synthetic_voc.py --out $(dir $(SYNTH_VOC))
$(SYNTH_IMAGEFOLDER)/dataset.json:
	$(PY) tools/make_synthetic_imagefolder.py --out $(SYNTH_IMAGEFOLDER)

CLASSIFY_OUTPUT := output/classifier_synth

# AttoNet-A as a classifier on the generated ImageFolder data (minutes on 2 CPU cores):
# top-1 / top-5, parameters, mult-adds and NetScore; then its weights converted into
# Detectron2 backbone weights for MODEL.WEIGHTS.
classify-demo: $(SYNTH_IMAGEFOLDER)/dataset.json
	$(PY) tools/train_classifier.py --variant A --data-root $(SYNTH_IMAGEFOLDER) \
		--image-size 64 --min-crop-scale 0.35 --epochs 10 --batch-size 64 --lr 0.2 \
		--workers 1 --resume --output $(CLASSIFY_OUTPUT)
	$(PY) tools/convert_classifier_to_d2.py $(CLASSIFY_OUTPUT)/model_final.pth \
		$(CLASSIFY_OUTPUT)/attonet_a_d2.pkl

# Machine-driven design exploration on the generated ImageFolder data: a family of
# AttoNets that meet projects/DesignExploration/configs/synth_classification.yaml and beat
# the prototype's NetScore (report.md, family.png and spec files in output/design_demo).
explore-demo: $(SYNTH_IMAGEFOLDER)/dataset.json
	$(PY) projects/DesignExploration/explore_design.py --task classification \
		--data $(SYNTH_IMAGEFOLDER) --budget 12 --resume \
		--requirements projects/DesignExploration/configs/synth_classification.yaml \
		--output output/design_demo

# Inference and training speed and memory of Atto-MaskRCNN A..D against ResNet-50-FPN
# Mask R-CNN (JSON, tables and plots in output/benchmarks; every engine at several sizes,
# which takes long on a CPU).
bench:
	$(PY) -m benchmarks.bench_inference
	$(PY) -m benchmarks.bench_train

# Mask R-CNN with each backbone of the grid (AttoNet-A..D, AttoNet-A with Detectron2's
# head widths, MobileNet-V2, ShuffleNet-V2, ResNet-50) under the comparison protocol of
# projects/BackboneGrid/configs/: a learning-rate check per model, then as many seeds as the 95%
# intervals need: days on 2 CPU cores. It resumes where it stopped and rewrites
# docs/results/backbone_grid.json, docs/MODEL_ZOO.md, its plots and README's results.
backbone-grid:
	$(PY) projects/BackboneGrid/train_backbone_grid.py --update-docs

# How far AP50 moves between seeds of AttoNet-A, per recipe, weights and validation set
# (docs/results/seed_spread.json; the grid's protocol was chosen from it).
seed-spread:
	$(PY) projects/BackboneGrid/measure_seed_spread.py --update-docs

env:
	@tools/ensure_env.sh

complexity:
	$(PY) tools/analyze_complexity.py --json output/complexity.json

# Re-resolves requirements/requirements.in into requirements/lock.txt.
lock:
	rm -rf /tmp/atto-lock-venv
	"$$(tools/ensure_env.sh --find-python)" -m venv /tmp/atto-lock-venv
	/tmp/atto-lock-venv/bin/pip install -q -r requirements/requirements.in
	{ echo "# Generated by 'make lock' from requirements/requirements.in: do not edit."; \
	  /tmp/atto-lock-venv/bin/pip freeze --all --exclude pip --exclude-editable; } > requirements/lock.txt

clean:
	rm -rf output .pytest_cache
