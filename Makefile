# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Each creates .venv when missing, installs the pinned torch pair first (an unpinned deepinv
# would pull another torch), then the project in editable mode. A stamp file makes a second
# run skip the install unless pyproject.toml changed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.invdiff-installed
PIP := $(PY) -m pip install -qq --disable-pip-version-check
DEMO_OUT ?= outputs/demo

.PHONY: demo test install clean-venv

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PIP) torch==2.14.1 torchvision==0.29.1
	$(PIP) -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/invdiff demo --out $(DEMO_OUT)

test: $(STAMP)
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
