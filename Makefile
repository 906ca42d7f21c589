# Quick start: `make demo` runs every stage end to end on a local Ray; `make test` runs the suite.
# Both create .venv on first use and install the project with its dependencies.
PYTHON ?= python3
VENV ?= .venv
# torch is installed first, pinned, so that the project's torch range installs nothing more.
# 2.13.0 is the CPU build on this project's machines; on a GPU box pass the build you want,
# e.g. `make TORCH_SPEC="torch==2.7.1" test`.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench-ingest install clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	# DeepSpeed JIT-compiles its CPU Adam (ZeRO-Offload's optimizer) on first use, about a minute on 2
	# cores: done once here, into torch's extension cache, rather than in a user's first offloaded
	# fine-tuning or in every test run on a fresh machine.
	$(BIN)/python -c "from deepspeed.ops.op_builder import CPUAdamBuilder; CPUAdamBuilder().load(verbose=False)"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dualvad demo

# Two pytest-xdist workers keep both cores busy (a test spends much of its time waiting on Ray). The tests
# of a shared run share a worker; --no-loadscope-reorder keeps the order tests/conftest.py gives the groups.
test: $(STAMP)
	$(BIN)/ruff check dualvad tests bench jobs
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --no-loadscope-reorder tests

lint: $(STAMP)
	$(BIN)/ruff check dualvad tests bench jobs

bench-ingest: $(STAMP)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) runs .pytest_cache
