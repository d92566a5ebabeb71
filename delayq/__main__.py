"""``python -m delayq``: the command line, which lives in ``delayq._cli``."""

from ._cli import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
