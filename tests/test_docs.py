"""Every Python code block of the README and of the documentation site (docs/) runs as written."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCKS = [(page, i, code) for page in PAGES
          for i, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), re.S))]


def test_every_page_is_linked_from_the_site():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in PAGES[1:]:
        assert str(page.relative_to(ROOT / "docs")) in nav, f"{page} is not in mkdocs.yml's nav"


def test_readme_is_short_and_has_three_examples():
    readme = (ROOT / "README.md").read_text()
    assert readme.count("\n") <= 250
    assert len(re.findall(r"```python\n", readme)) == 3


@pytest.mark.parametrize("page, index, code", BLOCKS, ids=[f"{p.relative_to(ROOT)}:{i}" for p, i, _ in BLOCKS])
def test_code_block_runs(page, index, code):
    exec(compile(code, f"{page.relative_to(ROOT)} block {index}", "exec"), {})
