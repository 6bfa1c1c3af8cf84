"""Redirect: `GET /t/{key}/r?to=URL&…` → 302 to a safe target, else 400 with a short page and no Location.

Safe means an http(s) target whose host is in the source's `allowed_hosts`, or a link carrying a valid
`sig` (POST /sources/{id}/links). A reader's click must reach the shop: a safe link whose other
parameters are out of bounds still redirects, it is only not captured (and counted). A stopped source
still redirects its safe links, capturing nothing.
"""

from __future__ import annotations

from starlette.responses import PlainTextResponse, RedirectResponse, Response

from actionhooks.capture.kinds.base import Call
from actionhooks.capture.kinds.pixel import query_items
from actionhooks.capture.links import UnsafeTarget, check_target, host_allowed, signature_valid
from actionhooks.capture.request import Refused, event_from_params, request_env

_NO_STORE = {"cache-control": "no-store", "referrer-policy": "no-referrer"}


class Redirect:
    name = "redirect"
    endpoints = {"r": frozenset({"GET", "HEAD"})}

    async def answer(self, call: Call) -> Response:
        source = call.source
        if source is None:
            call.refuse(self.name, "unknown_source")
            return PlainTextResponse("Unknown link.\n", 404, headers=_NO_STORE)
        try:
            items = query_items(call)
        except Refused as refused:
            return self._bad(call, refused.reason, refused.msg)
        names = [name for name, _ in items]
        if names.count("to") != 1 or names.count("sig") > 1:
            return self._bad(call, "bad_target", "the link must carry exactly one target (to=)")
        to = next(value for name, value in items if name == "to")
        sig = next((value for name, value in items if name == "sig"), None)
        signed = [(name, value) for name, value in items if name != "sig"]
        try:
            host = check_target(to)
        except UnsafeTarget as exc:
            return self._bad(call, "unsafe_target", str(exc))
        if sig is not None:
            if not signature_valid(source.spec.secret or "", signed, sig):
                return self._bad(call, "bad_signature", "the link's signature does not match (was it changed?)")
        elif not host_allowed(host, source.spec.allowed_hosts):
            return self._bad(call, "host_not_allowed", f"{host} is not an allowed target of this link")
        headers = dict(_NO_STORE)
        if not source.spec.active:
            call.refuse(self.name, "inactive")
        elif call.request.method == "GET":
            env = request_env(source, call.request)
            headers.update(env.headers())
            params = [(name, value) for name, value in signed if name != "to"]
            try:
                event = event_from_params(source, env, params, extra={"url": to})
            except Refused as refused:
                call.refuse(self.name, refused.reason)
            else:
                await call.capture(self.name, env, [event])
        return RedirectResponse(to, 302, headers=headers)

    def _bad(self, call: Call, reason: str, why: str) -> Response:
        call.refuse(self.name, reason)
        return PlainTextResponse(f"This link cannot be followed: {why}.\n", 400, headers=_NO_STORE)


KIND = Redirect()
