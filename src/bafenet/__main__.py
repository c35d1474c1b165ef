"""Allow ``python -m bafenet`` (and ``torchrun -m bafenet``)."""

from bafenet.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
