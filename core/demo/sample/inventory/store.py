"""An in-memory count of how many units of each item are in stock."""


class Inventory:
    """Counts how many units of each item are in stock."""

    def __init__(self):
        self._items = {}

    def add_item(self, name, qty):
        """Add qty units of name to the stock."""
        self._items[name] = self._items.get(name, 0) + qty

    def remove_item(self, name, qty):
        """Take qty units of name out of the stock."""
        current = self._items.get(name, 0)
        if qty > current:
            raise ValueError(f"only {current} of {name!r} in stock")
        remaining = current - qty
        if remaining:
            self._items[name] = remaining
        else:
            del self._items[name]

    def count(self, name):
        """How many units of name are in stock (0 if none)."""
        return self._items.get(name, 0)

    def items(self):
        """(name, qty) pairs of everything in stock, sorted by name."""
        return sorted(self._items.items())
