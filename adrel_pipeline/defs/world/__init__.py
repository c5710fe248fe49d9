"""Dagster definitions: world."""
