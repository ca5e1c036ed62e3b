# Two commands for a fresh machine: `make demo` and `make test`. Each creates .venv and
# installs the pinned requirements first (once; re-run when requirements.txt changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-gpu eval eval-robust eval-quick study tune lint clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/duo demo --output-dir demo-output

test: $(STAMP) lint
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check duo_unlearn tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_step.py --output bench-output/step_time.md

# real-size SD1.5/SDXL/SD3/FLUX with random weights; without CUDA it says so and exits 0
bench-gpu: $(STAMP)
	$(BIN)/python benchmarks/bench_gpu.py --output bench-output/gpu.md

eval study: $(STAMP)
	$(BIN)/duo eval --config configs/eval_shapeworld.yaml

eval-robust: $(STAMP)
	$(BIN)/duo eval --config configs/eval_robustness.yaml

eval-quick: $(STAMP)
	$(BIN)/duo eval --config configs/eval_shapeworld_quick.yaml

# DUO's beta x lambda on held-out prompts; the point meeting the preservation target -> tune-output/
tune: $(STAMP)
	$(BIN)/duo tune --config configs/tune_shapeworld.yaml

clean:
	rm -rf $(VENV) demo-output bench-output eval-output eval-robust-output eval-robust-*-output eval-quick-output tune-output
