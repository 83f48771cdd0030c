"""The ``imagegen`` command line: ``main`` is the group, each command lives in the module ``main.COMMANDS`` names."""
