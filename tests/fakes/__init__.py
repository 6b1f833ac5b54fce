"""Test doubles that speak real wire protocols (HTTP servers on 127.0.0.1)."""

from tests.fakes.ollama_server import FakeOllama, fake_ollama

__all__ = ["FakeOllama", "fake_ollama"]
