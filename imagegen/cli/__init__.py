"""The ``imagegen`` command line (SPEC §5)."""
