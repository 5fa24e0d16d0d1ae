"""What a judge may point at: which environment variable its key comes from, and which server.

A judge configuration names an environment variable and a URL, and the worker sends
``Bearer $VAR`` to that URL. Without limits, a judge could carry the worker's own secrets
(``SECRET_KEY``, ``DATABASE_URL``) to any listener, or reach services inside the network. So:

- ``api_key_env`` must match an operator's allow-list (setting ``JUDGE_KEY_ENV_ALLOWED``, comma-
  separated glob patterns, default ``*_API_KEY``) and is never one of Tandem's own secrets,
  whatever the list says;
- ``base_url`` is http(s), carries no credentials, and its host does not resolve to a loopback,
  private, link-local or otherwise internal address unless ``JUDGE_ALLOW_PRIVATE_URLS`` is set
  (a local model server needs it).

Checked when a judge is saved, when a run is created, and when its key is read. The address is
resolved at those times: a host whose DNS later changes is checked again at the next run.
"""

import ipaddress
import socket
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from django.conf import settings

# Tandem's own secrets: never a judge's key, whatever JUDGE_KEY_ENV_ALLOWED says.
FORBIDDEN_KEY_ENVS = frozenset(
    {
        "SECRET_KEY",
        "DATABASE_URL",
        "DATABASE_URL_TEST",
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
        "REDIS_URL",
        "REDIS_URL_TEST",
    }
)


def key_env_problem(name: str) -> str | None:
    """Why a judge may not read its key from ``name``, or None."""
    if not name:
        return None
    if name.upper() in FORBIDDEN_KEY_ENVS:
        return f"{name} holds one of Tandem's own secrets, never a judge's key"
    patterns = [p.strip() for p in settings.JUDGE_KEY_ENV_ALLOWED.split(",") if p.strip()]
    if not any(fnmatchcase(name, pattern) for pattern in patterns):
        return (
            f"{name} is not allowed: a judge's key variable must match "
            f"{', '.join(patterns) or '(nothing)'} (setting JUDGE_KEY_ENV_ALLOWED)"
        )
    return None


def base_url_problem(url: str, *, resolve=socket.getaddrinfo) -> str | None:
    """Why a judge may not call ``url``, or None."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "must be an http(s) URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "must not carry credentials (name the key's variable in api_key_env instead)"
    if settings.JUDGE_ALLOW_PRIVATE_URLS:
        return None
    try:
        infos = resolve(parts.hostname, port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return f"its host {parts.hostname!r} does not resolve"
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global or address.is_multicast:
            return (
                f"its host {parts.hostname!r} is an internal address ({address}); set "
                "JUDGE_ALLOW_PRIVATE_URLS=1 to allow local model servers"
            )
    return None


def redact_url(url: str) -> str:
    """``url`` without credentials, for showing a judge saved before they were refused."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()
