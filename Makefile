.PHONY: test test-fast bench

# The whole suite, after installing what it needs (CI runs exactly this via .ci/run).
test:
	./scripts/bootstrap.sh --test
	./scripts/services.sh
	.venv/bin/python -m pytest -q

# Everything but the end-to-end suites that start real servers and peers.
test-fast:
	./scripts/bootstrap.sh --test
	./scripts/services.sh
	.venv/bin/python -m pytest -q -m "not slow"

bench:
	./scripts/bootstrap.sh --test
	.venv/bin/python bench/api.py
