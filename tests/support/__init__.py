"""Helpers shared across the test tiers, as plain modules (fixtures live in the conftest.py files)."""
