"""Reuse the tracer's synthetic collections (tests/trace/conftest.py)."""

from tests.trace.conftest import collection_copy, traced_collection  # noqa: F401
