# Two commands set everything up on a fresh machine:
#   make test    create/update .venv with the pinned stack, then run the test suite
#   make repro   create/update .venv, then the core set of dvc.yaml's stages (the `small` profile of
#                params.yaml), two stages at a time (study/pipeline.py wraps `dvc repro`): every stage but
#                the benchmarks and the extended set (`meta: {set: extended}`), whose committed evidence
#                (reports/evidence) the report and the notebooks read instead
#   make repro-extended  the same with the extended set too: the text chain, the budget axis, Figure 2's
#                families, Figures 4 and 5, the tenBCD study; it rewrites reports/evidence (commit it with dvc.lock)
#   make bench   the performance benchmarks (`dvc repro bench`: machine-specific ratios, ~5 min)
#   make test-kernels  the numeric tests again under other MKL / ATen kernels and one thread, with a
#                fingerprint of how far results move (tests/kernel_variation.py; run before a release)
# Installing is skipped when the requirements did not change (a stamp keyed on their hash).

PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
REQS   := requirements.txt requirements.lock requirements-nodeps.txt pyproject.toml
HASH   := $(shell cat $(REQS) | sha256sum | cut -c1-16)
STAMP  := $(VENV)/.installed-$(HASH)
PYTEST_ARGS ?=

JOBS   ?= 2
# EXECUTOR=slurm submits each stage as a SLURM job (docs/cluster.md; JOBS is then the jobs in flight);
# PROFILE=paper sets params.yaml's profile first
EXECUTOR ?= local
PROFILE  ?=
PIPELINE_ARGS = --jobs $(JOBS) --executor $(EXECUTOR) $(if $(PROFILE),--profile $(PROFILE))

.PHONY: venv test test-kernels test-slurm repro repro-extended bench lab lab-check clean-venv

venv: $(STAMP)

$(STAMP): $(REQS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -c requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "environment ready: $(VENV) ($$(du -sh $(VENV) | cut -f1))"

# pytest exits 5 when it collected no test: that is a failure here, never a pass.
test: venv
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# the `slurm` tests against a one-node cluster on this machine (as root: scripts/slurm-local.sh installs and starts it)
test-slurm: venv
	scripts/slurm-local.sh
	$(PY) -m pytest -m slurm -rA -p no:randomly -n 0 tests/test_slurm.py

test-kernels: venv
	$(PY) -m tests.kernel_variation --out reports/kernels

repro: venv
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m study.pipeline $(PIPELINE_ARGS)

repro-extended: venv
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m study.pipeline $(PIPELINE_ARGS) --with extended

bench: venv
	PATH="$(abspath $(VENV))/bin:$$PATH" dvc repro bench

# The notebooks are jupytext percent scripts (notebooks/NN_name.py): make the notebook editor the default
# viewer of .py files, in this venv's JupyterLab settings only (jupytext's own helper writes them).
# every notebook opened and saved in JupyterLab by a real (headless Chromium) browser: git status must not change
lab-check: venv
	$(PY) scripts/lab_check.py

lab: venv
	$(VENV)/bin/jupytext-config --settings-file $(VENV)/etc/jupyter/labconfig/default_setting_overrides.json \
		set-default-viewer python
	$(VENV)/bin/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)
