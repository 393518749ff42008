"""The benchmarks page keeps, through every ``make bench`` run, the sections measured by a
command of their own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.bench import report

PAGE = """# Benchmarks

<!-- failover -->
old failover figures
<!-- /failover -->

<!-- replacement -->
## Replacement
- Command: `pytest ... -k full_fleet`
<!-- /replacement -->
"""


def test_a_run_keeps_the_sections_measured_by_their_own_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text(PAGE)
    monkeypatch.setattr(report, "_section_lines", lambda name, figures, plot: [f"new {name}"])
    results = {"fanout": {"date": "today", "command": "make bench"}}
    page = report.markdown(results, measured=["fanout"], kept=report.kept_sections(doc))
    assert "new fanout" in page
    assert "old failover figures" in page
    assert "<!-- replacement -->\n## Replacement\n- Command: `pytest ... -k full_fleet`\n" in page


def test_a_run_keeps_every_section_of_the_page_it_does_not_measure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(report, "_section_lines", lambda name, figures, plot: [f"new {name}"])
    doc = Path(__file__).resolve().parents[2] / "docs" / "BENCHMARKS.md"
    page = doc.read_text()
    kept = report.kept_sections(doc)
    results = {name: {"date": "today", "command": "make bench"} for name in report.SECTIONS}
    rewritten = report.markdown(results, measured=list(report.SECTIONS), kept=kept, plot_link=None)
    for name in set(re.findall(r"<!-- ([\w-]+) -->", page)) - set(report.SECTIONS):
        block = page[page.index(f"<!-- {name} -->") : page.index(f"<!-- /{name} -->")]
        assert block in rewritten, f"make bench would drop the section {name!r}"
