# Every target creates the environment it needs (.venv) on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv system-tools run test reliability soak test-slow lint format bench bench-forward eval eval-quick eval-denoise eval-denoise-quick schedules train train-heldout fit-gauss clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build of torch first, so the range in pyproject is already met
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[worker,train,dev,client]'
	touch $(STAMP)

venv: $(STAMP)

system-tools:  ## promtool/prometheus and chromium/chromedriver from apt, when missing (needs root or sudo)
	./.ci/install-system-tools.sh

run: $(STAMP)  ## redis-server + one worker + the API on :8000; Ctrl-C stops all
	$(PY) -m devstack

test: $(STAMP) system-tools  ## the default (fast) test run
	$(PY) -m pytest -m "not slow and not reliability"

reliability: $(STAMP)  ## fault injection: kill -9, poison jobs, SIGTERM, Redis restart, bursts, schemathesis
	$(PY) -m pytest -m reliability -s

soak: $(STAMP)  ## mixed load with worker kills and Redis restarts, an hour (MINUTES=3 for a short one); writes bench/results/soak.json
	$(PY) -m bench.soak --minutes $(or $(MINUTES),60)

test-slow: $(STAMP)  ## model-quality evaluation and other long tests
	$(PY) -m pytest -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy protocol app workers devstack bench client

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)  ## service vs floors vs peers; the FLOP limit; step- vs request-level batching; heap trims; writes bench/results/
	$(PY) -m bench.throughput
	$(PY) -m bench.flops
	$(PY) -m bench.request_batching
	$(PY) -m bench.heap_trim

bench-forward: $(STAMP)  ## the CPU forward's options (channels-last, bf16, torch.compile): speed and pixel differences (several minutes: compiles)
	$(PY) -m bench.forward_options

eval: $(STAMP)  ## class accuracy vs guidance, then the full sampling-noise sweep (about 16 min on 2 cores); writes eval/results/
	$(PY) -m workers.evaluation.class_accuracy
	$(PY) -m workers.evaluation.noise_sweep

eval-quick: $(STAMP)  ## the sampling-noise sweep on a few settings (optimized schedules included), small n; writes eval/results/noise/quick/
	$(PY) -m workers.evaluation.noise_sweep --quick

eval-denoise: $(STAMP)  ## auto-strength denoising vs BM3D, non-local means, BayesShrink, TV on 100 held-out digits (docs/denoise.md); writes eval/results/denoise/
	$(PY) -m workers.evaluation.denoise_eval

eval-denoise-quick: $(STAMP)  ## the same on 10 digits and 2 service settings (about a minute); writes eval/results/denoise/quick/
	$(PY) -m workers.evaluation.denoise_eval --quick

schedules: $(STAMP)  ## re-optimise the bundled models' timesteps (about 15 + 30 min on 2 cores); writes optimized_schedules.json
	$(PY) -m workers.evaluation.optimize_schedules --model mnist-gauss
	$(PY) -m workers.evaluation.optimize_schedules --model mnist-unet

train: $(STAMP)  ## retrain the bundled model (about 100 minutes on 2 CPU cores)
	$(PY) -m workers.training --run-dir runs/mnist-unet --steps 4000 --out workers/models/mnist-unet

train-heldout: $(STAMP)  ## the model of `make eval-denoise`: the same recipe without the 500 held-out digits, 2,000 steps (about 45 min on 2 CPU cores)
	$(PY) -m workers.training --run-dir runs/mnist-unet-heldout --steps 2000 --holdout --threads 1 --default-guidance 2.0 --out workers/models/mnist-unet-heldout

fit-gauss: $(STAMP)  ## refit the exact-score reference model mnist-gauss (seconds; deterministic)
	$(PY) -m workers.training.fit_gaussian --out workers/models/mnist-gauss --components 32

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
