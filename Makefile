# Two commands on a fresh clone:  `make demo` (main job end to end)  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := runs/demo

.PHONY: demo test env clean

env: $(STAMP)

# torch is installed first as the CPU pin, so nothing pulls the multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# The main job on the embedded default: log -> pairs -> DRAIL training -> export.
demo: $(STAMP)
	$(BIN)/drive-drail convert datasets/highway_lane_change/expert_log.parquet -o $(DEMO)/pairs.parquet
	rm -rf $(DEMO)/train
	$(BIN)/drive-drail train --scenario lane_change --algo drail --demos $(DEMO)/pairs.parquet \
		--steps 2048 --n-steps 256 --seed 0 --out $(DEMO)/train
	$(BIN)/drive-drail export $(DEMO)/train -o $(DEMO)/deploy

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) runs
