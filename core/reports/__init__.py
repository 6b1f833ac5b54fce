"""Documents about runs (JSON, Markdown, SARIF), rendered from what the store's queries return."""
