"""The Dagster wiring of the library, by domain; imported only by ``adrel_pipeline.definitions``."""
