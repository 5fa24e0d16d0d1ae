"""Model output and guidelines as safe HTML: markdown first, then sanitised.

Model output is untrusted. Raw HTML in it is shown as text (the markdown parser's HTML passes are
switched off), and the HTML the parser makes goes through ``nh3`` with a short allow-list: no
scripts, no event handlers, no styles, no images (they would call out), links only to http(s)
and mailto.

Fenced code blocks are highlighted on the server by Pygments (``codehilite``: CSS classes, no
inline styles; ``static/css/pygments.css``), only when the block names its language. The
sanitiser keeps ``class`` on ``div``/``span``/``code`` only for Pygments' own short token class
names (``k``, ``s2``, ...) and ``highlight``, so no other class or attribute gets through.
"""

import difflib
import re
from html import escape

import markdown
import nh3
from django.utils.safestring import SafeString, mark_safe
from pygments.token import STANDARD_TYPES

ALLOWED_TAGS = {
    "a",
    "b",
    "blockquote",
    "br",
    "code",
    "del",
    "div",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "ins",
    "li",
    "ol",
    "p",
    "pre",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "ul",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "td": {"align"}, "th": {"align"}}
URL_SCHEMES = {"http", "https", "mailto"}
HIGHLIGHT_CLASS = "highlight"
TOKEN_CLASSES = {name for name in STANDARD_TYPES.values() if name}
ALLOWED_CLASSES = {
    "div": {HIGHLIGHT_CLASS},
    "span": TOKEN_CLASSES,
    "code": set(),
    "pre": set(),
}
EXTENSIONS = ["fenced_code", "codehilite", "tables", "sane_lists"]
EXTENSION_CONFIGS = {
    "codehilite": {
        "css_class": HIGHLIGHT_CLASS,
        "guess_lang": False,  # only blocks that name their language
        "use_pygments": True,
        "noclasses": False,
        "wrapcode": True,
    }
}

# Texts longer than this are compared by lines, not words, so a diff stays fast.
DIFF_WORD_LIMIT = 4000
NEAR_IDENTICAL = 0.6


def _markdown() -> markdown.Markdown:
    md = markdown.Markdown(
        extensions=EXTENSIONS, extension_configs=EXTENSION_CONFIGS, output_format="html"
    )
    # Raw HTML in the source becomes text instead of markup.
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    return md


def sanitize(html: str) -> str:
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        allowed_classes=ALLOWED_CLASSES,
        url_schemes=URL_SCHEMES,
        clean_content_tags={"script", "style"},
        link_rel="noopener noreferrer nofollow",
    )


def render_markdown(text: str | None) -> SafeString:
    """Untrusted markdown to sanitised HTML, safe to put in a template as is."""
    if not text:
        return mark_safe("")
    html = _markdown().convert(text)
    return mark_safe(sanitize(html))


def similarity(a: str, b: str) -> float:
    """How alike two responses are (0..1), cheaply bounded from above first."""
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if matcher.real_quick_ratio() < NEAR_IDENTICAL or matcher.quick_ratio() < NEAR_IDENTICAL:
        return matcher.quick_ratio()
    if len(a) + len(b) > 4 * DIFF_WORD_LIMIT:
        return matcher.quick_ratio()
    return matcher.ratio()


def _tokens(text: str) -> list[str]:
    if len(text) > 6 * DIFF_WORD_LIMIT:
        return text.splitlines(keepends=True)
    return re.findall(r"\s+|\w+|[^\w\s]", text)


def diff_html(left: str, right: str) -> tuple[SafeString, SafeString]:
    """Both texts, escaped, with what the other lacks marked: ``<del>`` left, ``<ins>`` right."""
    a, b = _tokens(left), _tokens(right)
    out_a: list[str] = []
    out_b: list[str] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        old, new = escape("".join(a[i1:i2])), escape("".join(b[j1:j2]))
        if op == "equal":
            out_a.append(old)
            out_b.append(new)
            continue
        if old:
            out_a.append(f"<del>{old}</del>")
        if new:
            out_b.append(f"<ins>{new}</ins>")
    # Built from escaped text and our own two tags only.
    return mark_safe("".join(out_a)), mark_safe("".join(out_b))
