"""Widgets of the run view: timeline, live log, findings, diff and usage."""
