"""Plain-text tables for terminals: the CLI, the evaluation report and the benchmarks print through this."""

from __future__ import annotations


def format_table(header: list[str], rows: list[list]) -> str:
    """Columns padded to their widest cell, a dashed rule under the header."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


__all__ = ["format_table"]
