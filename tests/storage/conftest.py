"""Storage tests use the shared database fixtures of tests/conftest.py (`engine`, `sessions`)."""
