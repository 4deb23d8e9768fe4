"""An HTML-only reply → plain text, with the standard library's parser (no dependency for a rare case).

Block elements become line breaks, so that the reply parser finds "On ..., X wrote:" and the signature
on lines of their own; a blockquote's lines are quoted with "> " as a plain-text client would write them;
scripts, styles and the head are dropped.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCKS = frozenset(
    {"address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "footer", "h1", "h2", "h3",
     "h4", "h5", "h6", "header", "hr", "li", "ol", "p", "pre", "section", "table", "tr", "ul"}
)  # fmt: skip
_HIDDEN = frozenset({"script", "style", "head", "title", "template"})


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._line: list[str] = []
        self._hidden = 0
        self._quote = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag in _BLOCKS:
            self._break()
            if tag == "blockquote":
                self._quote += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCKS:
            self._break()
            if tag == "blockquote":
                self._quote = max(0, self._quote - 1)

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._line.append(data)

    def _break(self) -> None:
        text = re.sub(r"\s+", " ", "".join(self._line)).strip()
        self._line.clear()
        if text:
            self.lines.append("> " * self._quote + text)
        elif self.lines and self.lines[-1]:
            self.lines.append("")

    def close(self) -> None:
        super().close()
        self._break()


def html_to_text(html: str) -> str:
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    return "\n".join(collector.lines).strip()
