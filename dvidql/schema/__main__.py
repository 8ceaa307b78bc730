"""``python -m dvidql.schema [FILE]``: write the schema's SDL to FILE, or print it."""

from __future__ import annotations

import sys
from pathlib import Path

from dvidql.schema.build import sdl


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print("usage: python -m dvidql.schema [FILE]", file=sys.stderr)
        return 2
    if argv:
        Path(argv[0]).write_text(sdl(), encoding="utf-8")
    else:
        sys.stdout.write(sdl())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
