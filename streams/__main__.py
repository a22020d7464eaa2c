"""``python -m streams`` is the ``watchkeeper`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
