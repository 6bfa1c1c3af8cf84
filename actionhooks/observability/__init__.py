"""What the API tells about the engine: /healthz and /metrics.

The figures are read from the database (storage/monitoring.py), so any API process shows the whole
cluster without knowing where workers run: liveness.py caches the progress figures and tracks
whether the database still takes writes, cluster.py turns the workers' totals into Prometheus
metrics, metrics.py builds an API's registry and counters, middleware.py counts and times
POST /events. Reads are cached per process (cache.py), so a polled /healthz and a scraped /metrics
cost one round of queries every few seconds.
"""
