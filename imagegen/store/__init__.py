"""Persistence: SQLModel tables, engines and sessions, migrations, typed queries, the state machine's
compare-and-set statements (``transitions``), and the soft state kept in Redis (``softredis``)."""
