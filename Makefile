# The README's two commands: `make demo` (the main job) and `make test` (the test suite).
# Each creates .venv when missing and installs the package into it first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch/torchvision are pinned here (not in pyproject) so this machine's local wheels are used;
# the package itself accepts a range.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
export HF_HUB_OFFLINE := 1

.PHONY: install demo test lint bench clean

$(BIN)/gsam-repro: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --no-compile -q $(TORCH_PINS)
	$(BIN)/pip install --no-compile -q -e '.[suite,tensorboard,dev]' $(TORCH_PINS)
	# Byte-compile once (about 30 s): where PYTHONDONTWRITEBYTECODE is set, every process would
	# otherwise compile torch's Python sources again, about 3 s a process (each run, worker and
	# test subprocess). Some packages ship deliberately invalid files, which fail to compile:
	# harmless, so the step's exit status is ignored.
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib gsam_repro > /dev/null 2>&1 || true
	touch $@

install: $(BIN)/gsam-repro

demo: install
	$(BIN)/gsam-repro demo

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check gsam_repro tests

bench: install
	$(BIN)/gsam-repro bench optim
	$(BIN)/gsam-repro bench train
	$(BIN)/gsam-repro bench sweep
	$(BIN)/gsam-repro bench report

clean:
	rm -rf $(VENV) build *.egg-info
