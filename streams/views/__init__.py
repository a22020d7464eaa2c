"""Read-only views of what Watchkeeper watches, for people: ``status``, ``alerts``, ``ui``."""
