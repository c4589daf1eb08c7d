# Local habits, the same as CI's (.ci/run runs `make check` after the tests).
# Run inside the venv of the README's test command.
.PHONY: check lint types rust-lint test

check: lint types rust-lint

lint:
	ruff check
	ruff format --check

types:
	mypy --strict python/grokspec
	python -m mypy.stubtest grokspec._core --ignore-missing-stub

rust-lint:
	cargo fmt --all --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings

test:
	cargo test
	python -m pytest
