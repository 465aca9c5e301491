# Two commands on a fresh machine (Python 3.11 and the package registries are all they need):
#   make demo   - the whole pipeline end to end on the bundled data (vocab -> TFRecords -> pretraining
#                 -> fine-tuning -> export), with a summary table and a PNG of the curves
#   make test   - the test suite
# Both create .venv and install the project (with its test extras) on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench install clean

$(STAMP): setup.cfg pyproject.toml setup.py bert_tf/pretraining_data/_kernels.c
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test,bench,demo,beam]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VPY) -m bert_tf.cli.demo $(ARGS)

test: $(STAMP)
	$(VPY) -m pytest -q tests $(ARGS)

bench: $(STAMP)
	$(VPY) benchmarks/run_all.py $(ARGS)

clean:
	rm -rf output runs build *.egg-info
