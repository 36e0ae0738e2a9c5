"""Example Dagster project: two Cloudglue accounts configured in YAML (see defs/)."""
