# Two set-up commands: `make demo` and `make test`. Everything lives inside the checkout:
# the virtual environment in .venv/, a headless Scipion home and user data in .scipion/.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := $(CURDIR)/.venv
SCIPION_DIR := $(CURDIR)/.scipion
STAMP := $(VENV)/.installed
TESTS ?= cryoseg/tests  # e.g. make test TESTS=cryoseg/tests/test_mrcio.py

export SCIPION_DOMAIN := pwem
export SCIPION_HOME := $(SCIPION_DIR)/home
export SCIPION_USER_DATA := $(SCIPION_DIR)/data
export SCIPION_TESTS := $(SCIPION_DIR)/tests
export SCIPION_TEST_NOSYNC := 1
export SCIPION_NOTIFY := False
export SCIPION_PYTHON := $(VENV)/bin/python
export MPLBACKEND := Agg
export PATH := $(VENV)/bin:$(PATH)

.PHONY: demo test bench install scipion-home clean

demo: install scipion-home
	$(VENV)/bin/python -m cryoseg.demo

test: install scipion-home
	$(VENV)/bin/python -m pytest -q $(TESTS)

bench: install scipion-home
	for b in bench/*.py; do $(VENV)/bin/python $$b || exit 1; done

install: $(STAMP)

$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q torch==2.13.0
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e '.[test,ml]'
	touch $(STAMP)

scipion-home:
	mkdir -p $(SCIPION_HOME)/config $(SCIPION_USER_DATA) $(SCIPION_TESTS)
	printf '[localhost]\n' > $(SCIPION_HOME)/config/hosts.conf

clean:
	rm -rf $(VENV) $(SCIPION_DIR) demo_output
