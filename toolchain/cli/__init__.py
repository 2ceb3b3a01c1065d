"""The ``edgeprune`` command line: one Click group, one module per command family."""
