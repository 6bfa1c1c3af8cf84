"""Copy-paste snippets of a capture source, built from the URLs the API gives it (SourceOut.urls).

Each is what README's "Copy-paste snippets" shows, with this source's real URLs filled in. Secrets
never appear: the webhook curl names the password or signing secret as a placeholder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from actionhooks.capture.model import SourceOut

__all__ = ["Snippet", "snippets_of"]

STUB = ('<script>window.actionhooks=window.actionhooks||{q:[],track:function(){this.q.push(["track",arguments])},'
        'identify:function(){this.q.push(["identify",arguments])}};</script>')


@dataclass(frozen=True)
class Snippet:
    label: str  # the accessible name of its text box ("Site snippet", "Pixel tag", ...)
    slug: str
    text: str
    hint: str


def snippets_of(source: SourceOut) -> list[Snippet]:
    urls, kind = source.urls, source.kind
    if kind == "pixel":
        tag = f'<img src="{urls["pixel"]}?profile_id={{{{profile_id}}}}" width="1" height="1" alt="">'
        hint = ("Put it in the email's HTML. Add campaign_id, message_id, … as parameters; "
                f"event= picks one of {', '.join(source.event_types)}.")
        return [Snippet("Pixel tag", "pixel", tag, hint)]
    if kind == "site":
        text = f'{STUB}\n<script async src="{urls["script"]}"></script>'
        hint = ("Paste it into every page's <head>. The page's origin must be listed in Allowed origins; "
                "then call actionhooks.track(name, props) and actionhooks.identify({profile_id, …}).")
        return [Snippet("Site snippet", "site", text, hint)]
    if kind == "webhook":
        sample = {"event": source.event_types[0] if source.event_types else "", "profile_id": "p-1"}
        auth = source.auth.get("type")
        flags = ""
        if auth == "basic":
            flags = f" -u '{source.auth.get('username', '')}:PASSWORD'"
        elif auth == "standard_webhooks":
            flags = " -H 'webhook-id: …' -H 'webhook-timestamp: …' -H 'webhook-signature: v1,…'"
        text = (f"curl -s -X POST '{urls['webhook']}'{flags} -H 'Content-Type: application/json' \\\n"
                f"  -d '{json.dumps([sample])}'")
        hint = {"basic": "PASSWORD is the one set below (write-only, never shown).",
                "standard_webhooks": "Sign each request with the Standard Webhooks secret set below."}.get(
            str(auth), "This source needs no authentication: anyone with the URL can post.")
        return [Snippet("Webhook curl", "webhook", text, hint)]
    example = f"{urls['redirect']}?to=https%3A%2F%2F{(source.allowed_hosts or ['shop.example'])[0].lstrip('*.')}%2F"
    hint = "Targets on Allowed hosts need no signature; for any other target create a signed link below."
    return [Snippet("Redirect link", "redirect", example, hint)]
