# Two entry points: `make run` (default grid) and `make test` (lint + tests).
# Both create .venv at the repo root and install the project into it, with the dev and
# ray extras (so the executor=ray tests run on a local Ray instance).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= results
# The quick grid of `make run` (the headline in a few minutes on 2 cores): the timing attack
# and the knockoff function-stealing baseline, undefended and under one timing, one exit-decision and one
# output defense. `harness run attacks=all defenses=all` is the full grid.
QUICK_GRID := victims=digits_cnn attacks=exit_steal,knockoff \
	defenses=none,pad_constant,exit_noise,rounding seeds=0 executor=process jobs=2

.PHONY: install run test lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,ray]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/harness run $(QUICK_GRID) out=$(OUT)

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(OUT)
