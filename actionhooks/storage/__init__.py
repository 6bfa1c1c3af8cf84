"""Persistence: schema (tables.py), engines (db.py), migrations (migrate.py) and repositories."""
