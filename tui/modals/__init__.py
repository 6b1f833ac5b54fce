"""Modal screens: intervention decisions, confirms, export, "run stopped" and the key help."""
