# Two entry points (see README): `make demo` and `make test`. Each creates or reuses .venv,
# installs what it needs, and makes sure the Fashion-MNIST files are present.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test install data bench

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

data: install
	$(PY) -m studio data fetch

demo: data
	$(PY) -m studio demo

test: data
	$(PY) -m pytest -q

bench: data
	$(PY) benchmarks/trainer_overhead.py
	$(PY) benchmarks/teacher_budget.py
	$(PY) benchmarks/fid_speed.py
