"""The developer journey: the recipe schema and catalog, the declaration form, launches,
secrets and the workload pages."""
