# Two commands on a fresh clone:  `make demo` (main job end to end)  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := runs/demo

.PHONY: demo test env clean

env: $(STAMP)

# torch is installed first as the CPU pin, so nothing pulls the multi-GB CUDA build.
# MetaDrive goes in with --no-deps so that pygame-ce (highway-env's) keeps the `pygame` module.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test,metadrive]'
	$(BIN)/pip install -q --disable-pip-version-check --no-deps metadrive-simulator==0.4.3
	touch $(STAMP)

# The main job on the embedded default: log -> pairs -> DRAIL training (batched simulator) -> export
# -> closed-loop evaluation in highway-env (20 held-out episodes per policy) -> report.
demo: $(STAMP)
	$(BIN)/drive-drail convert datasets/highway_lane_change/expert_log.parquet -o $(DEMO)/pairs.parquet
	rm -rf $(DEMO)/train
	$(BIN)/drive-drail train --scenario lane_change --algo drail --demos $(DEMO)/pairs.parquet \
		--sim batched --steps 750000 --n-envs 128 --n-steps 16 --ppo-batch 512 --ppo-epochs 5 \
		--disc-epochs 1 --disc-batch 512 --seed 0 --out $(DEMO)/train
	$(BIN)/drive-drail export $(DEMO)/train -o $(DEMO)/deploy
	rm -rf $(DEMO)/results
	$(BIN)/drive-drail evaluate --policy drail=$(DEMO)/train --policy expert --policy constant \
		--scenario lane_change --episodes 20 -o $(DEMO)/results
	$(BIN)/drive-drail report $(DEMO)/results -o $(DEMO)/report --training-logs $(DEMO)/train

# The report test opens the HTML in a real headless browser (Debian's chromium); where apt cannot
# install it, that one test skips and says so.
test: $(STAMP)
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed: the report's browser test will skip"
	$(BIN)/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) runs
