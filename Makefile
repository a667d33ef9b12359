# Two commands, on a fresh clone with only Python >= 3.10 and pip:
#   make demo   set up .venv and run the demo on synthetic data
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch build installed when the venv has none. On a GPU machine you may set e.g.
# TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124".
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install -e ".[test]"
	touch $@

demo: setup
	$(PY) -m brats demo --out demo_output --submissions submissions/output

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf demo_output .pytest_cache
