"""Shared test helpers: third-party Kafka clients, a hostile stream generator, and the
plumbing that runs a worker on fresh topics and reads what it wrote.

Imported as ``helpers`` from any test module: ``tests/`` is on ``sys.path`` the same way
``tests/receivers.py`` is (pytest's default ``prepend`` import mode inserts the directory
of the root ``conftest.py``, which is not inside a package).
"""
