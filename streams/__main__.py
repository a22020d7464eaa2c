"""``python -m streams`` is the ``watchkeeper`` command."""

from streams.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
