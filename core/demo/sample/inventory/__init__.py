"""A tiny in-memory inventory."""

from inventory.store import Inventory

__all__ = ["Inventory"]
