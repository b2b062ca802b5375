"""Rewrite the README's configuration table from service/.../variables.py: ``make config-table``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from sessionvalidator_service.variables import markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(<!-- config-table: generated[^\n]*-->\n\n).*?(\n\n<!-- config-table: end -->)", re.DOTALL)


def main() -> int:
    """Replace what stands between the markers; 1 when they are missing."""
    text = README.read_text(encoding="utf-8")
    if not BLOCK.search(text):
        sys.stderr.write("config-table: the README's config-table markers are missing\n")
        return 1
    README.write_text(BLOCK.sub(lambda m: m.group(1) + markdown_table() + m.group(2), text), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
