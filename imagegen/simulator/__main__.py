"""``python -m imagegen.simulator [--host H] [--port N]``."""

from __future__ import annotations

import argparse

from .app import run


def main() -> None:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(prog="python -m imagegen.simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8800)
    args = parser.parse_args()
    run(args.host, args.port)


if __name__ == "__main__":
    main()
