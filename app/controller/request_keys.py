"""What the guards put on a request for the handlers, and what a handler puts there for the response: apart from
``security.py`` so that handlers (the gateway, ``protocols/``) need not import the guards, which import them."""

from __future__ import annotations

from aiohttp import web

from llmctl.app.controller.limits import KeyState

KEY_STATE = web.RequestKey("api_key", KeyState)  # which API key the request presented
EXTRA_HEADERS = web.RequestKey("extra_headers", dict)  # set by a handler, added to whatever response leaves
