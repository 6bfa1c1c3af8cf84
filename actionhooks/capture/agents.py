"""Who is asking: crawlers (the `crawlerdetect` library's maintained patterns) and mail-provider image proxies.

Matching a user agent against crawlerdetect's patterns costs ~250 µs; a mass send brings few distinct
user agents, so answers are memoised (bounded LRU: a stranger sending random agents costs one match each).
"""

from __future__ import annotations

import functools

from crawlerdetect import CrawlerDetect

__all__ = ["is_bot", "mail_proxy"]

_DETECTOR = CrawlerDetect()

# Image proxies of mail providers: an open through one is the provider prefetching, not a person.
# Apple Mail Privacy Protection fetches with the bare user agent "Mozilla/5.0" (nothing else does).
_PROXIES = (("GoogleImageProxy", "gmail"), ("YahooMailProxy", "yahoo"))


@functools.lru_cache(maxsize=4096)
def is_bot(user_agent: str) -> bool:
    """A known crawler, spider or headless fetcher (crawlerdetect); an empty user agent counts as one."""
    return not user_agent.strip() or bool(_DETECTOR.isCrawler(user_agent))


def mail_proxy(user_agent: str) -> str | None:
    """"apple_mpp", "gmail", "yahoo" when the request comes from that provider's image proxy, else None."""
    if user_agent.strip() == "Mozilla/5.0":
        return "apple_mpp"
    for marker, name in _PROXIES:
        if marker in user_agent:
            return name
    return None
