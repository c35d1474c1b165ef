"""Allow ``python -m bafenet`` (and ``torchrun -m bafenet``)."""

from bafenet.cli import console_main

if __name__ == "__main__":
    raise SystemExit(console_main())
