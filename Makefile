# Every target does its own set-up on a fresh machine; the environment lives in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
MANIFEST := dbt/target/manifest.json
DBT_SOURCES := $(shell find dbt -path dbt/target -prune -o \( -name '*.sql' -o -name '*.yml' -o -name '*.csv' \) -print 2>/dev/null)
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DBT_VERSION_CHECK := false
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: install system-deps demo test dev bench bench-anomalies clean

install: $(STAMP) $(MANIFEST)

# The recipe is part of what the environment is built from: a change to it (the bytecode
# step, say) reaches existing environments on the next `make install`.
$(STAMP): pyproject.toml requirements.lock Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	# Bytecode is compiled once here. Where Python may not write it (PYTHONDONTWRITEBYTECODE,
	# a read-only image), every process would otherwise compile what it imports again:
	# Great Expectations took 10.7 CPU s to import that way and 4.8 s from bytecode.
	# compileall rather than uv's --compile-bytecode, which skips packages already installed.
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib
	# pyspark ships only as a source archive, and uv builds it again into a new cache entry
	# (~1 GB) on every fresh install; without this the cache filled a 250 GB disk.
	$(BIN)/uv cache prune --quiet
	touch $(STAMP)

# The dbt manifest is prepared at build time, so loading the code location stays quick.
$(MANIFEST): $(STAMP) $(DBT_SOURCES)
	cd dbt && INFERLEDGER_LAKE=$(CURDIR)/data/lake INFERLEDGER_WAREHOUSE=$(CURDIR)/data/warehouse.duckdb \
		../$(BIN)/dbt parse --quiet --project-dir . --profiles-dir .

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: install
	$(BIN)/inferledger demo
	$(BIN)/inferledger report --out data/report.html

# The servers the tests start for real (Prometheus, PostgreSQL, headless Chromium), and
# Java for the Spark equality test.
system-deps:
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null \
		&& [ -x /usr/lib/postgresql/15/bin/initdb ] && command -v chromium >/dev/null \
		&& command -v java >/dev/null; then :; else \
		DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			prometheus postgresql chromium openjdk-17-jre-headless; fi

test: install system-deps
	$(BIN)/pytest

dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# A production day end to end (BENCH_SCALE=0.1 for a tenth of it); day N+1 after 1, 30 and
# 90 days of history at BENCH_HISTORY_SCALE, each timed twice beside a day 1 (90 production
# days would be 900 M requests to copy and build first); then each connector alone.
BENCH_SCALE ?= 1
BENCH_HISTORY_SCALE ?= 0.01
bench: install
	$(BIN)/pytest -m slow -s
	$(BIN)/python bench/bench_pipeline.py --scale $(BENCH_SCALE) --history '' --results bench/RESULTS.md
	$(BIN)/python bench/bench_pipeline.py --scale $(BENCH_HISTORY_SCALE) --history 1,30,90 --results bench/RESULTS.md
	$(BIN)/python bench/bench_cur.py --repeat 1
	$(BIN)/python bench/bench_gateway.py
	$(BIN)/python bench/bench_dcgm.py
	$(BIN)/python bench/bench_exports.py --scale 0.25
	$(BIN)/python bench/bench_lake_s3.py

bench-anomalies: install
	$(BIN)/python bench/anomaly_eval.py

clean:
	rm -rf data dbt/target dbt/logs .dagster_home
