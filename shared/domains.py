"""Company domains, addresses and company names as Offramp compares them: one spelling
each (the enrollment service and the CLI's list upload normalise alike).

``WWW.Bücher.de.``, ``bücher.de`` and ``xn--bcher-kva.de`` are one company. The ``idna``
package (IDNA 2008 with UTS 46 mapping, what browsers do) turns Unicode labels into
punycode; Python's built-in codec only knows IDNA 2003.
"""

from __future__ import annotations

import idna

from shared.contracts.exclusions import ListKind

_MAX_DOMAIN = 253


def normalize_domain(text: str) -> str | None:
    """The domain's ASCII (punycode) form in lower case, without ``www.``, a scheme, a path
    or a trailing dot; None when ``text`` is not a domain name."""
    host = text.strip().lower()
    if "://" in host:
        host = host.split("://", 1)[1]
    host = host.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    host = host.rsplit("@", 1)[-1].rstrip(".")
    host = host.removeprefix("www.")
    if not host or "." not in host or len(host) > _MAX_DOMAIN:
        return None
    try:
        ascii_host = idna.encode(host, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None
    return ascii_host.lower().removeprefix("www.")


def list_value(kind: ListKind, value: str) -> str | None:
    """An entry (or a record's value) as lists hold it, or None when it cannot be one."""
    text = value.strip()
    if kind is ListKind.DOMAIN:
        return normalize_domain(text)
    if kind is ListKind.EMAIL:
        local, at, host = text.lower().rpartition("@")
        domain = normalize_domain(host) if at else None
        return f"{local}@{domain}" if local and domain and " " not in local else None
    return " ".join(text.casefold().split()) or None
