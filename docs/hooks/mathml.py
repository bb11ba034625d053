"""mkdocs hook: typesets the formulas of the site as MathML when it is built.

`pymdownx.arithmatex` (generic mode) marks ``$...$`` and ``$$...$$`` in the
pages and the docstrings; this hook turns each into MathML with latex2mathml,
so formulas render in any current browser with no JavaScript and no network.
"""

import html
import re

from latex2mathml.converter import convert

# What arithmatex's generic mode writes: \( ... \) inline, \[ ... \] as a block.
_INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)
_BLOCK = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.S)


def _mathml(match, display):
    latex = html.unescape(match.group(1))
    return convert(latex, display="block" if display else "inline")


def on_page_content(content, **kwargs):
    content = _BLOCK.sub(lambda m: f'<div class="math">{_mathml(m, True)}</div>', content)
    return _INLINE.sub(lambda m: _mathml(m, False), content)
