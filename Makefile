.PHONY: test setup lock

# Sets everything up from nothing (packages, databases, .venv) and runs the whole suite.
test: setup
	.venv/bin/python -m pytest

setup:
	scripts/bootstrap.sh

# Re-pin after changing dependencies in setup.cfg.
lock:
	.venv/bin/uv pip freeze --python .venv/bin/python --exclude-editable > constraints.txt
