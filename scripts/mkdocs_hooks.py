"""MkDocs hook: pages may include a benchmark run's report, so that the results page is generated from
the committed run (``benchmarks/results/<run>/report.md``) instead of copied by hand.

A line ``<!-- include-report: RUN -->`` is replaced by that run's report.md (its headings moved two
levels down), ``<!-- include-report-tables: RUN -->`` by its tables only.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!-- include-report: ([\w.-]+) -->$", re.M)
TABLES = re.compile(r"^<!-- include-report-tables: ([\w.-]+) -->$", re.M)


def _report(run: str) -> str:
    path = ROOT / "benchmarks" / "results" / run / "report.md"
    text = path.read_text()
    text = re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", text, flags=re.M)
    return text


def _tables(run: str) -> str:
    """Only the report's tables (and the lines between them), for a page that has its own prose."""
    lines = _report(run).splitlines()
    return "\n".join(line for line in lines if line.startswith("|"))


def on_page_markdown(markdown: str, page, config, files) -> str:
    markdown = TABLES.sub(lambda m: _tables(m.group(1)), markdown)
    return MARKER.sub(lambda m: _report(m.group(1)), markdown)
