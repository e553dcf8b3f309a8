# Two entry points (see README): `make demo` (the app on the shipped models) and `make test`.
# Each creates or reuses .venv, installs what it needs, and makes sure the Fashion-MNIST files
# are present; `make test` also installs Debian's Chromium for the browser test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test install data browser bench models

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

data: install
	$(PY) -m studio data fetch

demo: data
	$(PY) -m studio ui --models ui/models

browser:
	command -v chromium >/dev/null || (test "$$(id -u)" = 0 && export DEBIAN_FRONTEND=noninteractive && (apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)) >/dev/null) || echo "no chromium: the browser test will be skipped"

test: data browser
	$(PY) -m pytest -q

# Rebuild the app's shipped models (ui/models) with the repository's own recipe (about 3.5 hours on 2 CPU cores;
# every step resumes): the class-agreement judge (a Fashion-MNIST classifier at 32x32, about 10 min), then the
# teacher (unpacked from benchmarks/results/teacher_assets.tar.gz, the default recipe of
# benchmarks/teacher_quality.py; without it, trained with `studio teacher train`'s defaults, about 81 min more),
# its 2-RF and InstaFlow student (about 88 min: pairs, 2-RF, pairs, student), the best DMD2 student of
# benchmarks/results/dmd.json (about 14 min), then the class-conditional consistency model: iCT with every fix of
# benchmarks/ict_fixes.py, its 3,000-step budget and class labels (100 min measured here): the best 1-step FID at
# N = 5,000 on that budget (docs/ict.md).
JUDGE := runs/models/classifier
ICT := runs/models/ict
models: data
	test -f $(JUDGE)/classifier.json || $(PY) -m studio cda squeeze --resolution 32 --width 16 --steps 2000 \
		--checkpoint-every 250 --resume latest --out $(JUDGE)
	mkdir -p ui/models/classifier
	cp $(JUDGE)/classifier.safetensors $(JUDGE)/classifier.json $(JUDGE)/config.json ui/models/classifier/
	$(PY) benchmarks/instaflow.py --stages-only --export ui/models
	$(PY) benchmarks/dmd.py --export ui/models
	test -f $(ICT)/studio_model.json || $(PY) -m studio ict train --conditional --noise-scale 0.25 --sigma-data 0 \
		--dropout 0.3 --flip --steps 3000 --lr 2e-4 --max-grad-norm 1.0 --checkpoint-every 250 --resume latest \
		--no-progress --out $(ICT)
	rm -rf ui/models/ict && mkdir -p ui/models/ict
	cp -r $(ICT)/unet $(ICT)/studio_model.json $(ICT)/config.json ui/models/ict/

bench: data
	$(PY) benchmarks/trainer_overhead.py
	$(PY) benchmarks/teacher_budget.py
	$(PY) benchmarks/fid_speed.py
	$(PY) benchmarks/bf16_speed.py
	$(PY) benchmarks/ict_bf16_signal.py
	$(PY) benchmarks/instaflow.py
	$(PY) benchmarks/dmd.py
	$(PY) benchmarks/sd_scale.py
