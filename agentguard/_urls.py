"""The hosts a URL can reach: every host the common HTTP clients would connect to for it.

HTTP clients do not agree on where a URL's authority ends. RFC 3986 readers (``urllib.parse``,
``httpx``) end it at ``/``, ``?`` or ``#``; WHATWG readers (``urllib3`` and so ``requests``,
browsers) also end it at a backslash. So ``http://evil.test\\@api.example.com/`` is
``api.example.com`` to one client and ``evil.test`` to the other, and an allowlist that reads the
URL one way is walked around by a tool that reads it the other. A check on the host of a URL
therefore checks every host it can reach.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["reached_hosts"]


def reached_hosts(url: str) -> tuple[str, ...]:
    """The lower-cased hosts ``url`` reaches (one, or two when clients disagree), in the
    RFC 3986 reading first; empty for text that is not a URL with a host.
    """
    hosts: list[str] = []
    readings = (url, url.replace("\\", "/")) if "\\" in url else (url,)
    for reading in readings:
        try:
            host = urlsplit(reading).hostname
        except ValueError:  # an invalid bracketed address, a bad port: no host in this reading
            continue
        if host and host not in hosts:
            hosts.append(host)
    return tuple(hosts)
