"""Every ```python block of README.md and docs/**/*.md runs, so none can go stale.

The blocks of one page run in order in one namespace, as a reader would type
them, in a temporary directory. Bash and output blocks are not run. A block
that cannot run on its own for a real reason is preceded by
``<!-- not-a-test: the reason -->``; a page whose blocks import TensorFlow
is skipped on the other backends.
"""

import pathlib
import re
import textwrap

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
# A fenced block, possibly indented (in a list item): indent, language, code.
FENCE = re.compile(r"^([ \t]*)```([^\n`]*)\n(.*?)^\1```[ \t]*$", re.MULTILINE | re.DOTALL)
# The comment that may stand right before a block; it cannot span two comments.
NOT_A_TEST = re.compile(r"<!--\s*not-a-test:((?:(?!-->).)*)-->\Z", re.DOTALL)


def blocks(page):
    """[(line number, language, code, reason not to run or None), ...] of `page`."""
    text = page.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        marker = NOT_A_TEST.search(text[: match.start()].rstrip())
        line = text.count("\n", 0, match.start()) + 2  # the block's first line of code
        found.append((line, match.group(2).strip(), textwrap.dedent(match.group(3)),
                      marker.group(1).strip() if marker else None))
    return found


def page_id(page):
    return str(page.relative_to(ROOT))


def test_pages_are_found_and_python_blocks_are_marked_python():
    assert ROOT / "README.md" in PAGES and ROOT / "docs" / "monitor.md" in PAGES
    for page in PAGES:
        for line, language, _, reason in blocks(page):
            # ```py, ```pycon or ```python3 would silently escape the test.
            assert language == "python" or not language.startswith("py"), (page, line)
            assert reason is None or reason, f"{page}:{line}: not-a-test needs a reason"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    runnable = [(line, code) for line, language, code, reason in blocks(page)
                if language == "python" and reason is None]
    if not runnable:
        pytest.skip("no python blocks")
    if keras.config.backend() != "tensorflow" and any(
            re.search(r"^\s*import tensorflow", code, re.MULTILINE) for _, code in runnable):
        pytest.skip("the page's examples need the TensorFlow backend")
    monkeypatch.chdir(tmp_path)
    keras.utils.set_random_seed(0)
    namespace = {"__name__": "__docs__"}
    for line, code in runnable:
        # Pad with newlines so that a traceback names the page's own line.
        exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)
