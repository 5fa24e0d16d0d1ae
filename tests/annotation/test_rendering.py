"""Model output renders as markdown and can never run script."""

import re
from html.parser import HTMLParser

import pytest

from annotation.rendering import diff_html, render_markdown, sanitize, similarity

ATTACKS = [
    "<script>alert(1)</script>hello",
    '<img src=x onerror="alert(1)">',
    "[click](javascript:alert(1))",
    '<a href="javascript:alert(1)">x</a>',
    '<div onmouseover="alert(1)">hover</div>',
    "<iframe src='https://evil.example'></iframe>",
    "<svg><script>alert(1)</script></svg>",
    '<p style="background:url(javascript:alert(1))">s</p>',
    "![x](https://evil.example/pixel.png)",
    '[a](https://ok.example "t" onclick="x")',
]


class Elements(HTMLParser):
    """The elements and attributes a browser would build from the HTML."""

    def __init__(self, html):
        super().__init__()
        self.found = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


@pytest.mark.parametrize("text", ATTACKS)
def test_attacks_render_inert(text):
    elements = Elements(str(render_markdown(text))).found
    for tag, attrs in elements:
        assert tag not in {"script", "iframe", "img", "svg", "style", "object", "embed"}
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert "style" not in attrs
        href = attrs.get("href") or ""
        assert not href.strip().lower().startswith(("javascript", "data", "vbscript")), href


def test_raw_html_is_shown_as_text():
    html = str(render_markdown("Use <b>bold</b> or <script>x()</script>"))
    assert "&lt;b&gt;" in html
    assert "&lt;script&gt;" in html


def test_markdown_and_code_blocks_render():
    text = (
        "# Title\n\n**bold** and `code`\n\n"
        "```python\nif a < b:\n    print('<x>')\n```\n\n- one\n- two"
    )
    html = str(render_markdown(text))
    assert "<h1>Title</h1>" in html
    assert "<strong>bold</strong>" in html
    assert "<code>code</code>" in html
    assert '<div class="highlight"><pre>' in html and "&lt;x&gt;" in html
    text_only = re.sub(r"<[^>]+>", "", html)
    assert "if a &lt; b:" in text_only
    assert "<li>one</li>" in html


def test_links_get_safe_rel():
    html = str(render_markdown("[site](https://example.com)"))
    assert 'href="https://example.com"' in html
    assert "noopener" in html


def test_sanitize_drops_event_handlers_from_html():
    assert sanitize('<a href="https://x.org" onclick="steal()">x</a>').count("onclick") == 0


def test_empty():
    assert render_markdown("") == ""
    assert render_markdown(None) == ""


def test_diff_marks_changes_and_escapes():
    left, right = diff_html("The cat <sat> here.", "The dog <sat> here.")
    assert "<del>cat</del>" in left and "<ins>dog</ins>" in right
    assert "&lt;sat&gt;" in left and "<sat>" not in right


def test_similarity():
    assert similarity("abc def ghi", "abc def ghj") > 0.8
    assert similarity("completely different", "nothing alike here at all") < 0.6


def test_code_blocks_are_highlighted_and_still_safe():
    from annotation.rendering import render_markdown

    html = render_markdown(
        "```python\ndef f():\n    return '<b>x</b>'\n```\n\n"
        '<span class="k" onclick="alert(1)">raw</span>\n\n'
        "```\nplain <i>text</i>\n```"
    )
    assert '<div class="highlight">' in html and '<span class="k">def</span>' in html
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert '<span class="k" onclick' not in html  # raw HTML stays text
    assert '&lt;span class="k" onclick' in html
    assert "plain &lt;i&gt;text&lt;/i&gt;" in html


def test_only_pygments_classes_survive():
    from annotation.rendering import sanitize

    html = sanitize(
        '<span class="k evil">a</span><div class="highlight x">b</div><p class="k">c</p>'
    )
    assert 'class="k"' in html and "evil" not in html and 'class="highlight"' in html
    assert '<p class="k">' not in html
