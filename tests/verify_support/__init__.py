"""Generators of tool outputs (valid, truncated, malformed, huge) for the parser tests and bench/verify.py."""
