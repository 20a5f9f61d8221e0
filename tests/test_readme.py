"""Every ```python block of the README runs.

Each block is executed in a fresh namespace inside a temporary working
directory, so a block that writes files (the experiment) leaves nothing behind.
"""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
_HEADING = re.compile(r"^#+ (.+)$", re.MULTILINE)


def _blocks():
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        headings = _HEADING.findall(text, 0, match.start())
        title = headings[-1] if headings else "top"
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        blocks.append(pytest.param(match.group(1), id=f"{len(blocks)}-{slug}"))
    return blocks


BLOCKS = _blocks()


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 7


@pytest.mark.parametrize("code", BLOCKS)
def test_readme_block_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BIOSIM_PROGRESS", "0")
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})  # noqa: S102
