.PHONY: test setup imports docs lock bench bench-quick demo

# Sets everything up from nothing (packages, databases, .venv), checks the import layers, builds
# the docs, runs the whole suite.
test: setup
	$(MAKE) imports docs
	.venv/bin/python -m pytest

# The import contract of pyproject.toml: each layer imports only from below, no cycles, no
# Airflow in the core.
imports:
	.venv/bin/lint-imports

# The documentation, strictly: a warning, a broken link or reference fails (offline; about 10 s).
docs:
	.venv/bin/sphinx-build -W --keep-going -n -q -b html docs docs/_build/html

setup:
	scripts/bootstrap.sh

# Re-pin after changing dependencies in setup.cfg.
lock:
	.venv/bin/uv pip freeze --python .venv/bin/python --exclude-editable > constraints.txt

# Throughput (each case three times, with its CPU time), initial loads, resyncs, trigger overhead,
# latency, memory and source table size against the local databases (~15 min); results JSON in
# bench/results/, each run compared with the one before it there. bench-quick runs tiny sizes in seconds.
bench:
	.venv/bin/python -m bench --compare last

bench-quick:
	.venv/bin/python -m bench --quick

# A real replication end to end on SQLite (source, destination and Airflow's metadata database)
# in a temporary AIRFLOW_HOME, with the example config of dags/reflections; ends by itself.
demo: setup
	.venv/bin/python scripts/demo.py
