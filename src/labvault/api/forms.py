"""What the public forms share: whether a browser posted them from another site."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request


def cross_site(request: Request) -> bool:
    """A browser's request sent by another site: its fetch metadata says so, or, from a
    browser too old to send it, an ``Origin`` that is not this host. Fetch metadata comes
    first: a proxy that rewrites ``Host`` must not turn the laboratory's own form away."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return False
    try:
        netloc = urlsplit(origin).netloc.lower()
    except ValueError:
        return True
    return origin == "null" or netloc != request.headers.get("host", "").lower()


__all__ = ["cross_site"]
