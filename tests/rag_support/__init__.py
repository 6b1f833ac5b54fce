"""Helpers for the rag tests that run in subprocesses."""
