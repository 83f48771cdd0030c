"""Persistence: SQLModel tables, engine/session setup, migrations, and typed queries."""
