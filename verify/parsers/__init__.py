"""Parsers that turn verification tools' output into findings, one module per format."""
