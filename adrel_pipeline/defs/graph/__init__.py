"""Dagster definitions: graph."""
