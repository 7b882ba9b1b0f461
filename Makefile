.PHONY: test test-fast lint bench

# The whole suite, after installing what it needs (CI runs exactly this via .ci/run).
test:
	./scripts/bootstrap.sh --test
	.venv/bin/ruff check src tests
	.venv/bin/mypy
	./scripts/services.sh
	.venv/bin/python -m pytest -q --durations=30

# The linter and the type checker (strict on sip/, media/, flows/ and calls/), as `make test` runs them.
lint:
	./scripts/bootstrap.sh --test
	.venv/bin/ruff check src tests
	.venv/bin/mypy

# Everything but the end-to-end suites that start real servers and peers.
test-fast:
	./scripts/bootstrap.sh --test
	./scripts/services.sh
	.venv/bin/python -m pytest -q -m "not slow"

bench:
	./scripts/bootstrap.sh --test
	.venv/bin/python bench/api.py
