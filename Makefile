# kumo — make targets in the kubebuilder tradition. On a fresh machine `make demo` and
# `make test` install everything they need (a venv with pinned packages, the Go builds of the
# local control plane) and reuse it on later runs.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
CONTROLPLANE := $(VENV)/.controlplane
SHARDER := $(VENV)/.sharder
PYTEST_ARGS ?=
# `make test` and `make e2e` run pytest on PYTEST_WORKERS pytest-xdist workers, each starting a test
# bed of its own: most e2e time is waiting on reconciles, polls and sweeps, not CPU, so two workers
# nearly halve it on two cores. A test file stays on one worker (--dist loadfile: module fixtures
# run once, a file's tests keep their order); files go out in collection order, not most tests
# first (--no-loadscope-reorder), so the long few-test e2e files start early and the many short
# unit files come last, filling whichever worker ends first. A test marked `@pytest.mark.alone` runs afterwards
# in a serial pass with nothing else on the machine (tests/README.md says when a test needs it).
# A reused bed (KUMO_TESTBED_ENV) can serve one worker only, so then there is no xdist worker.
PYTEST_WORKERS ?= $(if $(KUMO_TESTBED_ENV),0,2)
PYTEST_PARALLEL := -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not alone"
# pytest exits 5 when it collects nothing: no test of the selection is marked `alone`.
PYTEST_ALONE := -m alone $(PYTEST_ARGS) || test $$? -eq 5

.PHONY: help install controlplane sharder test unit e2e demo bench bench-rivals chaos lint fmt docs dev-up dev-down clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml constraints.txt testbed/pyproject.toml examples/provider-plugin/pyproject.toml
	@echo "==> creating $(VENV) and installing pinned Python packages"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --progress-bar off -c constraints.txt -e '.[test]'
	@echo "==> installing the test bed (development tooling, its own distribution: never in kumo's wheel)"
	@$(PY) -m pip install --progress-bar off --no-deps -e testbed
	@echo "==> installing the example provider plugin (the e2e tests drive the controller through it)"
	@$(PY) -m pip install --progress-bar off --no-deps -e examples/provider-plugin
	@touch $@

install: $(INSTALLED)  ## the venv with kumo and its test dependencies

$(CONTROLPLANE): $(INSTALLED) testbed/controlplane/go.mod testbed/controlplane/go.sum
	@echo "==> kube-apiserver + etcd (built once into the cache, reused later)"
	@$(PY) -c "from kumo.testbed.cluster import ensure_binaries; print(ensure_binaries())"
	@touch $@

controlplane: $(CONTROLPLANE)  ## build (once) the local Kubernetes control plane

# The sharder (timebertt/kubernetes-controller-sharding) for tests/e2e/test_sharder.py: built once
# into the cache like the control plane (testbed/sharding.py; about 2 CPU-minutes the first time).
$(SHARDER): $(INSTALLED) testbed/sharder/go.mod testbed/sharder/go.sum testbed/sharder/main.go
	@echo "==> the sharder (built once into the cache, reused later)"
	@$(PY) -c "from kumo.testbed.sharding import ensure_sharder; print(ensure_sharder())"
	@touch $@

sharder: $(SHARDER)  ## build (once) the sharder the sharded tests run

test: $(CONTROLPLANE) $(SHARDER) lint  ## lint, then unit + e2e tests against the local control plane and emulators
	@echo "==> running tests ($(PYTEST_WORKERS) workers, then the tests marked alone)"
	@$(PY) -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)
	@$(PY) -m pytest $(PYTEST_ALONE)

unit: $(INSTALLED)  ## unit tests only (no servers)
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

e2e: $(CONTROLPLANE) $(SHARDER)  ## e2e tests only
	@$(PY) -m pytest tests/e2e $(PYTEST_PARALLEL) $(PYTEST_ARGS)
	@$(PY) -m pytest tests/e2e $(PYTEST_ALONE)

demo: $(CONTROLPLANE)  ## the whole story on the local test bed: no cloud account needed
	@$(PY) -m kumo.testbed.demo

# `make bench` runs the side-by-side twice: each controller at its own poll/resync (results key
# "rivals"), then every poll/resync at 60 s ("rivals_resync_60"); BENCH_RIVALS_RESYNC=default
# keeps the first only. `make bench-rivals` runs the defaults unless BENCH_RIVALS_RESYNC says more.
BENCH_RIVALS_RESYNC_ALL ?= default,60

bench: $(CONTROLPLANE) $(SHARDER)  ## benchmarks at scale, kumo sharded over 1, 2, 4 replicas, then beside its rivals at their defaults and at a 60 s resync -> bench/results.json (BENCH_N, BENCH_SCALE_N; BENCH_SHARDS=0 skips the sharded runs, BENCH_RIVALS=0 the rivals)
	@$(PY) -m bench.run
	@$(PY) -m bench.sharded
	@BENCH_RIVALS_RESYNC="$${BENCH_RIVALS_RESYNC:-$(BENCH_RIVALS_RESYNC_ALL)}" $(PY) -m bench.sidebyside

bench-rivals: $(CONTROLPLANE)  ## only kumo beside its rivals, each on a fresh bed (bench/sidebyside.py; BENCH_QUICK=1 for N=5)
	@$(PY) -m bench.sidebyside

chaos: $(CONTROLPLANE)  ## full-size chaos (200 objects, 20 SIGKILLs) and fault injection (100 objects, 20 %)
	@KUMO_CHAOS_OBJECTS=200 KUMO_CHAOS_KILLS=20 $(PY) -m pytest -s tests/e2e/test_chaos.py $(PYTEST_ARGS)
	@KUMO_FAULT_OBJECTS=100 $(PY) -m pytest -s tests/e2e/test_faults.py $(PYTEST_ARGS)

lint: $(INSTALLED)  ## ruff + mypy + the layering contracts (import-linter)
	@echo "==> lint"
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@$(PY) -m mypy kumo controller providers testbed bench
	@$(PY) -m kumo.testbed.importlint
	@$(PY) -m kumo.testbed.docsgen --check

docs: $(INSTALLED)  ## regenerate docs/reference/crds.md from crds/
	@$(PY) -m kumo.testbed.docsgen

fmt: $(INSTALLED)  ## format the code
	@$(PY) -m ruff format .
	@$(PY) -m ruff check --fix .

dev-up: $(CONTROLPLANE)  ## start the test bed in the background (kumo dev up)
	@$(VENV)/bin/kumo dev up

dev-down: $(INSTALLED)  ## stop it (kumo dev down)
	@$(VENV)/bin/kumo dev down

clean:  ## remove the venv and local state (the control-plane build cache stays)
	rm -rf $(VENV) .kumo .pytest_cache .mypy_cache .ruff_cache *.egg-info
