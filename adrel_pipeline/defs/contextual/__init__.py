"""Dagster definitions: contextual relevance."""
