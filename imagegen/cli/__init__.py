"""The ``imagegen`` command line (README, 'Using it')."""
