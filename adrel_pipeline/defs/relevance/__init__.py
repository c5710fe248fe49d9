"""Dagster definitions: relevance."""
