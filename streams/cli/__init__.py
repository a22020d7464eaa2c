"""The ``watchkeeper`` command: dispatch plus one module per command group."""
