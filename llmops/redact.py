"""Keeping secrets out of every record: credentials in URLs, secret values echoed back by servers.

- ``split_url(url)``: ``(url without user:password@, (user, password) or None)``; the clean URL is the only one
  that is stored, printed, or put in a report; the credentials travel as HTTP basic auth.
- ``redact_url(url)``: the same URL with its credentials removed, for messages.
- ``url_secrets(url)``: the password (and an opaque user name) of a URL, for the runner's masking.
- ``scrub(text, secrets)``: ``text`` with every secret value replaced by ``***`` (a hostile or careless server
  that echoes the API key back in an error body must not get it into a log or a report).
- ``remember(secret)``: the process-wide register of secret values. Library code hands every secret it reads
  (an API key, a URL's password, a kubeconfig's token) to ``remember`` before anything could print it;
  ``scrub_known(text)`` removes them from what is written (reports, outputs), and each listener added with
  ``on_remember`` hears of every secret, earlier ones included (llmops.gha adds the one that writes the runner's
  ``::add-mask::`` lines, so the library itself writes no workflow command).
"""
from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote, urlsplit, urlunsplit

SCRUB_MIN = 8  # shorter values are masked by the runner but not scrubbed from files ("pass" is also a result)
_SECRETS: set[str] = set()
_REMEMBERED: list[str] = []  # every value given to remember(), in order, for listeners added later
_LISTENERS: list[Callable[[str], None]] = []


def split_url(url: str) -> tuple[str, tuple[str, str] | None]:
    text = str(url or "")
    try:
        parts = urlsplit(text)
    except ValueError:
        return text, None
    if "@" not in parts.netloc:
        return text, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, (unquote(user), unquote(password))


def redact_url(url: str) -> str:
    return split_url(url)[0]


def url_secrets(url: str) -> list[str]:
    _, creds = split_url(url)
    if creds is None:
        return []
    user, password = creds
    raw_userinfo = urlsplit(str(url)).netloc.rpartition("@")[0]
    out = [v for v in (password, raw_userinfo.partition(":")[2]) if v]
    if not password and user:  # a token passed as the user name (https://TOKEN@host)
        out += [user, raw_userinfo]
    return sorted(set(out), key=len, reverse=True)


def scrub(text: str, secrets) -> str:
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def remember(secret: str | None) -> None:
    """Register a secret value (each line separately): scrubbed from files, announced to every listener."""
    if not secret:
        return
    for line in secret.splitlines():
        if len(line.strip()) >= SCRUB_MIN:
            _SECRETS.add(line.strip())
    _REMEMBERED.append(secret)
    for listener in list(_LISTENERS):
        listener(secret)


def on_remember(listener: Callable[[str], None]) -> None:
    """Call ``listener(secret)`` for every secret remembered so far and from now on (added once)."""
    if listener in _LISTENERS:
        return
    _LISTENERS.append(listener)
    for secret in list(_REMEMBERED):
        listener(secret)


def scrub_known(text: str) -> str:
    """``text`` with every remembered value replaced by ``***`` (longest first)."""
    if not _SECRETS or not isinstance(text, str):
        return text
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return text
