"""Where a URL or an e-mail address leads, read the way the clients that use them read them.


HTTP clients do not agree on where a URL's authority ends. RFC 3986 readers (``urllib.parse``,
``httpx``) end it at ``/``, ``?`` or ``#``; WHATWG readers (``urllib3`` and so ``requests``,
browsers) also end it at a backslash. So ``http://evil.test\\@api.example.com/`` is
``api.example.com`` to one client and ``evil.test`` to the other, and an allowlist that reads the
URL one way is walked around by a tool that reads it the other. A check on the host of a URL
therefore checks every host it can reach.

E-mail addresses likewise: a mail library delivers to ``mailto:drop@attacker.example``,
``"drop box"@attacker.example``, a local part in any letters (SMTPUTF8), a domain in fullwidth
letters (IDNA reads it as NFKC) and ``drop@[203.0.113.9]``; a check that knows only
``name@domain`` in ASCII misses each.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

__all__ = ["email_domains", "reached_hosts"]

# An address: a local part of RFC 5322 atoms (any letters) or quoted, after "mailto:" or "To:"
# too; a domain of any letters or an address literal. The user part of a URL
# ("https://user@host") is no address (see ``email_domains``).
_EMAIL = re.compile(r"(?<![\w.%+\-!#$&'*=?^`{|}~])"
                    r"(?:\"[^\"\r\n]{0,64}\"|[\w.%+\-!#$&'*=?^`{|}~]{1,64})"
                    r"@([^\W_][\w\-]{0,62}(?:\.[\w\-]{1,63}){1,8}"
                    r"|\[(?:IPv6:)?[0-9A-Fa-f.:]{2,45}\])")
_NOT_USERINFO = re.compile(r"[\s/?#\\]")


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


def email_domains(text: str, *, scan: int = 4096, limit: int = 8) -> list[str]:
    """The lower-cased domains (address literals as their address) of the e-mail addresses in
    the first ``scan`` characters of ``text``, at most ``limit`` of them."""
    if "@" not in text:
        return []
    domains: list[str] = []
    for match in _EMAIL.finditer(text, 0, scan):
        start = match.start()
        scheme = text.rfind("://", max(0, start - 256), start)
        if scheme >= 0 and not _NOT_USERINFO.search(text, scheme + 3, start):
            continue  # the user part of a URL: its host is the URL's host
        domain = match.group(1)
        if domain[0] == "[":
            domain = domain[1:-1].lower().removeprefix("ipv6:")
        elif domain.isascii():
            domain = domain.lower()
        else:
            domain = unicodedata.normalize("NFKC", domain).lower()
        if domain not in domains:
            domains.append(domain)
            if len(domains) >= limit:
                break
    return domains
