# Two commands: `make run` and `make test`. Everything else is a helper of those.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# uv with pip's index configuration (tools/uvpip.py): the same mirror pip would use
UVPIP := $(PY) tools/uvpip.py
LOCK := requirements.lock
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed
ADDR ?= 127.0.0.1:8000
# Bytecode of whatever make starts is written on first import into $(VENV)/pycache, also where
# PYTHONDONTWRITEBYTECODE is set (this machine): else every process of `make run` (deploy, seed,
# web, worker, beat) compiles each module it imports again, and the alternative, compiling all of
# site-packages at install as pip does, costs ~12 s of CPU here for 5,000 files mostly never imported.
export PYTHONPYCACHEPREFIX := $(CURDIR)/$(VENV)/pycache
unexport PYTHONDONTWRITEBYTECODE
# a numbered heading before each step of `make run`, so a first run shows where its time goes
step = @printf '\n==> [%s] %s\n' "$(1)" "$(2)"

.PHONY: run test install lint lock migrate seed bench soak clean

# One dependency list: pyproject.toml ([project].dependencies, extras dev and oracles);
# requirements.lock is generated from it (`make lock`) and every install is constrained by it.
# uv installs (tools/uvpip.py hands it pip's index configuration).
UV_PIN = $(shell grep -m1 '^uv==' $(LOCK))
$(VENV)/bin/uv: $(LOCK)
	$(call step,install 1/2,virtualenv $(VENV) and $(UV_PIN))
	test -x $(PY) || $(PYTHON) -m venv --without-pip $(VENV)
	@# the outer pip installs into the venv (pip >= 22.3: --python), sparing ensurepip's seconds;
	@# an older or missing outer pip: the venv gets its own
	$(PYTHON) -m pip --python $(PY) install -q --disable-pip-version-check "$(UV_PIN)" 2>/dev/null \
	  || { $(PY) -m ensurepip -q && $(PY) -m pip install -q --disable-pip-version-check "$(UV_PIN)"; }
	touch $@

# `make run` needs only the runtime dependencies
$(RUN_STAMP): pyproject.toml $(LOCK) $(VENV)/bin/uv
	$(call step,install 2/2,runtime packages (pyproject.toml, pinned by $(LOCK)))
	$(UVPIP) install -r pyproject.toml -c $(LOCK)
	touch $@

# everything: tests, browser journeys, ruff, pip, the SDK oracles (runpod and vastai with only the
# dependencies pyproject's [tool.uv] declares for them: see there)
$(STAMP): pyproject.toml $(LOCK) $(VENV)/bin/uv
	$(call step,install,runtime + dev + oracles (pyproject.toml, pinned by $(LOCK)))
	$(UVPIP) install -r pyproject.toml --extra dev --extra oracles -c $(LOCK)
	touch $@ $(RUN_STAMP)

install: $(STAMP)

# regenerate the lock after editing pyproject.toml's dependencies (tests/test_dependencies.py
# fails while the two disagree); --universal: one lock for every Python 3.11+ and platform
lock: $(VENV)/bin/uv
	$(UVPIP) compile pyproject.toml --extra dev --extra oracles --universal --python-version 3.11 \
	  --custom-compile-command "make lock" -o $(LOCK)

# the same deploy command as production (Procfile release step, docker-compose)
migrate: $(RUN_STAMP)
	$(call step,migrate,manage.py deploy)
	$(PY) manage.py deploy

seed: migrate
	$(call step,seed,manage.py seed_demo --with-history)
	$(PY) manage.py seed_demo --with-history

run: seed
	$(call step,start,web + worker + beat on http://$(ADDR)/)
	$(PY) manage.py runstack --addr $(ADDR)

lint: install
	$(VENV)/bin/ruff check .
	$(PY) manage.py makemigrations --check --dry-run

test: install lint
	PROVISIONER_TESTING=1 CELERY_TASK_ALWAYS_EAGER=1 DJANGO_ALLOW_ASYNC_UNSAFE=true SANDBOX_BOOT_SECONDS=0 \
	  $(VENV)/bin/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# the embedded stack for an hour under the three journeys (README: "The embedded broker")
soak: install
	$(PY) manage.py soak --minutes $${SOAK_MINUTES:-60}

bench: install
	$(PY) bench/run_all.py --quick

clean:
	rm -rf $(VENV) var
