import unittest

from inventory import Inventory


class InventoryTest(unittest.TestCase):
    def test_add_accumulates(self):
        stock = Inventory()
        stock.add_item("apple", 3)
        stock.add_item("apple", 2)
        self.assertEqual(stock.count("apple"), 5)

    def test_count_of_unknown_item_is_zero(self):
        self.assertEqual(Inventory().count("pear"), 0)

    def test_remove_takes_units_out(self):
        stock = Inventory()
        stock.add_item("apple", 3)
        stock.remove_item("apple", 1)
        self.assertEqual(stock.count("apple"), 2)

    def test_remove_last_unit_drops_the_item(self):
        stock = Inventory()
        stock.add_item("apple", 1)
        stock.remove_item("apple", 1)
        self.assertEqual(stock.items(), [])

    def test_cannot_remove_more_than_in_stock(self):
        stock = Inventory()
        stock.add_item("apple", 1)
        with self.assertRaises(ValueError):
            stock.remove_item("apple", 2)

    def test_items_are_sorted_by_name(self):
        stock = Inventory()
        stock.add_item("banana", 5)
        stock.add_item("apple", 3)
        self.assertEqual(stock.items(), [("apple", 3), ("banana", 5)])


if __name__ == "__main__":
    unittest.main()
