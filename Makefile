# Two commands: `make run` and `make test`. Everything else is a helper of those.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test install lint migrate seed bench soak clean

$(STAMP): requirements.txt requirements-dev.txt requirements-oracles.txt requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null
	$(PY) -m pip install -q -r requirements-dev.txt -c requirements.lock
	$(PY) -m pip install -q --no-deps -r requirements-oracles.txt -c requirements.lock
	touch $(STAMP)

install: $(STAMP)

# the same deploy command as production (Procfile release step, docker-compose)
migrate: install
	$(PY) manage.py deploy

seed: migrate
	$(PY) manage.py seed_demo --with-history

run: seed
	$(PY) manage.py runstack

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
