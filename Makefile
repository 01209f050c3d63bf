# The two commands the README promises, plus lint and benchmarks.
# `make demo` and `make test` each do all the set-up a fresh machine needs.
.PHONY: setup demo test lint bench compat

PY311 := $(shell scripts/python-for 3.11)
PY312 := $(shell scripts/python-for 3.12 || scripts/python-for 3.13)

setup:
	@scripts/bootstrap

demo: setup
	cd demo && ../.venv/bin/python manage.py test shop

lint: setup
	.venv/bin/tox run -e lint

test: setup lint
	.venv/bin/tox run -e py311-django52 --discover $(PY311) -- -W error -n 2
	@if [ -n "$(PY312)" ]; then \
	  .venv/bin/tox run -e py312-django61 --discover $(PY312) -- -W error -n 2; \
	elif [ "$$CI" = "true" ]; then \
	  echo "CI=true but no Python 3.12+ for Django 6.x"; exit 1; \
	else \
	  echo "No Python 3.12+ found: Django 6.x tests skipped (Django 5.2 ran)"; \
	fi

bench: setup
	.venv/bin/python -m benchmarks --update-readme

# Suites nobody here wrote, with testbed installed (not part of `make test`):
# pytest-django's own, and Django's own (45 database-heavy apps, with
# Django's runner and with testbed's, outcomes compared) on every engine.
compat: setup
	scripts/pytest-django-suite
	scripts/django-suite
