#!/usr/bin/env bash
# Every benchmark, one after the other; prints the Markdown tables for the README's "## Performance".
# Needs PostgreSQL and RabbitMQ on 127.0.0.1 (Redis and the Kafka test broker are started privately).
# Run on a quiet machine: the figures are CPU-bound and every other process on the cores skews them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
$PY bench/e2e_http.py "$@"
$PY bench/matching.py
$PY bench/brokers.py
$PY bench/memory.py
$PY bench/capture.py
$PY bench/history.py
$PY bench/worker_metrics.py
$PY bench/batch_window.py
