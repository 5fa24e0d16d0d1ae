"""``{{ text|untrusted_markdown }}``: the one sanitiser (``annotation.rendering``) for templates.

Model output, imported prompts and rationales are untrusted: every template that shows them as
markdown goes through this filter, so one allow-list decides what reaches a browser.
"""

from django import template
from django.utils.safestring import SafeString

from annotation.rendering import render_markdown

register = template.Library()


@register.filter(name="untrusted_markdown")
def untrusted_markdown(text: str | None) -> SafeString:
    return render_markdown(text)
