"""Shipped assets for `orchestrator demo`: a tiny sample repository and a cassette of model answers."""
