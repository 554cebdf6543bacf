"""Every relative link of the README and the changelog points at a file or folder of the checkout.

No database: the landing pages are read as text. Links to web addresses and to anchors of the
same page are left to the reader; the docs build checks the links between docs pages itself.
"""

import re
import pytest

from tests.support import REPO as ROOT

PAGES = ("README.md", "CHANGELOG.md")
# [text](target) and [label]: target, outside code spans and fences.
INLINE = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
DEFINITION = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def relative_links(text: str) -> list[str]:
    prose = CODE_SPAN.sub("", FENCE.sub("", text))
    targets = INLINE.findall(prose) + DEFINITION.findall(prose)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page):
    links = relative_links((ROOT / page).read_text(encoding="utf-8"))
    assert links, f"{page} links to nothing in the checkout"
    broken = [link for link in links if not (ROOT / page).parent.joinpath(link.split("#")[0]).exists()]
    assert not broken, f"{page}: relative links to missing files: {broken}"


def test_links_are_found_and_checked():
    text = "[a](docs/x.md) [b](https://example.org) [c](#top) `[d](no.md)`\n```\n[e](no.md)\n```\n[f]: y.md\n"
    assert relative_links(text) == ["docs/x.md", "y.md"]
