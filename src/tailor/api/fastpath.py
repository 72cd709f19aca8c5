"""The recommendation route without the framework's per-request machinery.

``GET /v1/users/{user_id}/recommendations`` is the call a shop makes on every page view,
and measured under load about three quarters of its time went to FastAPI's routing,
dependency resolution and parameter validation, not to the answer. :class:`RecommendationFastPath`
is a pure ASGI middleware that answers the common, well-formed request itself:

- it accepts only what the FastAPI route would accept with the same values (the path, ``k``
  as plain digits within the limit, single context values of 1 to 64 characters, at most 20
  categories per list); anything else, including a request it cannot parse, goes on to the
  route untouched, which validates it and gives its usual 4xx answer;
- the key, rate limit, scope and tenant are checked by the same
  :func:`~tailor.api.deps.authorize` the route's dependency calls, and a refusal is answered
  by FastAPI's own ``HTTPException`` handler; the answer is written by the same
  :func:`~tailor.api.routes.recommend.recommendations_json` the route calls, and an error
  there goes to the app's exception handlers (503 while no model is loaded, and so on);
- it sits outside the whole middleware stack (:func:`outermost`): measured under load, the
  stack's layers (error, body-limit and metrics middleware, each wrapping ``send``) cost a
  fifth of the server's time on a request they have nothing to do for; a GET has no body to
  limit, errors go to the app's own handlers, and the fast path counts and times its answers
  in the same metrics under the route's template, as the metrics middleware would.

The OpenAPI spec still describes the route, which stays the reference for what is valid.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, HTTPException
from fastapi.exception_handlers import http_exception_handler
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tailor.api.deps import MAX_TENANT_CHARS, TENANT_HEADER, authorize
from tailor.api.metrics import API_PREFIX, ApiMetrics
from tailor.api.routes import recommend
from tailor.api.state import AppState

_PATH = re.compile(r"/v1/users/([^/]+)/recommendations")
_DIGITS = re.compile(r"[0-9]{1,9}")
_CONTEXT = {"country": "country", "device": "device_type", "source": "channel"}
_CATEGORIES = ("include_category", "exclude_category")
_TENANT = TENANT_HEADER.lower().encode("latin-1")
_JSON_HEADERS = [(b"content-type", b"application/json")]


class _Decline(Exception):
    """The request is not one the fast path answers; the route will."""


class RecommendationFastPath:
    """Answers well-formed recommendation requests before routing (see the module docstring).

    Parameters
    ----------
    app : the app's whole middleware stack, which answers every other request.
    fastapi : the app, for its state and exception handlers.
    metrics : where the answers are counted and timed.
    """

    def __init__(self, app: ASGIApp, fastapi: FastAPI, metrics: ApiMetrics) -> None:
        self.app = app
        self.fastapi = fastapi
        self.metrics = metrics
        self.route = _recommendation_route()
        self.template = API_PREFIX + self.route.path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            match = _PATH.fullmatch(scope["path"])
            if match is not None:
                try:
                    query = _parse_query(scope["query_string"], self.state.api.max_k)
                    user_id = match.group(1)
                    if len(user_id) > recommend.MAX_ID_CHARS:
                        raise _Decline
                    token, tenant = _credentials(scope["headers"])
                except _Decline:
                    pass
                else:
                    started = time.perf_counter()
                    scope["route"] = self.route
                    status = await self._answer(scope, receive, send, user_id, query, token, tenant)
                    self.metrics.observe(
                        self.template, "GET", status, time.perf_counter() - started
                    )
                    return
        await self.app(scope, receive, send)

    @property
    def state(self) -> AppState:
        return self.fastapi.state.tailor

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        user_id: str,
        query: dict[str, Any],
        token: str | None,
        tenant: str | None,
    ) -> int:
        """Answer the request; returns the answer's status."""
        try:
            caller = authorize(self.state, token, tenant, "recommend")
            body = recommend.recommendations_json(caller.tenant, user_id, **query)
        except Exception as exc:  # answered as the app answers it, via its handlers
            response = await self._handle(scope, receive, exc)
            await response(scope, receive, send)
            return response.status_code
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return 200

    async def _handle(self, scope: Scope, receive: Receive, exc: Exception) -> Response:
        request = Request(scope, receive)
        if isinstance(exc, HTTPException):
            return await http_exception_handler(request, exc)
        handlers = self.fastapi.exception_handlers
        for cls in type(exc).__mro__:
            handler = handlers.get(cls)
            if handler is not None:
                return await handler(request, exc)
        raise exc  # pragma: no cover - the app registers a handler for Exception


def outermost(app: FastAPI, metrics: ApiMetrics) -> None:
    """Put the fast path in front of ``app``'s whole middleware stack (built on the first
    request, as Starlette builds it; middleware added later still lands inside)."""
    build = app.build_middleware_stack

    def build_with_fast_path() -> ASGIApp:
        return RecommendationFastPath(build(), fastapi=app, metrics=metrics)

    app.build_middleware_stack = build_with_fast_path  # type: ignore[method-assign]


def _recommendation_route() -> APIRoute:
    """The route as FastAPI records it on a request's scope (the router's own route, whose
    path the metrics prefix with ``/v1``)."""
    for route in recommend.router.routes:
        if isinstance(route, APIRoute) and route.endpoint is recommend.recommendations:
            return route
    raise LookupError("the recommendations router has no route to shortcut")


def _parse_query(query_string: bytes, max_k: int) -> dict[str, Any]:
    """The route's arguments from the query string, or :class:`_Decline` for anything the
    route would refuse, read differently, or that this reading is not sure of."""
    # As Starlette reads it: latin-1, then percent-decoding as UTF-8, blanks kept.
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    k = 10
    context: dict[str, str | None] = dict.fromkeys(_CONTEXT.values())
    lists: dict[str, list[str]] = {}
    seen: set[str] = set()
    for name, value in pairs:
        if name in _CATEGORIES:
            values = lists.setdefault(name, [])
            values.append(value)
            if len(values) > recommend.MAX_CATEGORIES:
                raise _Decline
            continue
        if name in seen:
            raise _Decline  # a repeated single value: the route reads the last
        seen.add(name)
        if name == "k":
            if not _DIGITS.fullmatch(value):
                raise _Decline
            k = int(value)
            if not 1 <= k <= max_k:
                raise _Decline
        elif name in _CONTEXT:
            if not 1 <= len(value) <= recommend.MAX_TEXT_CHARS:
                raise _Decline
            context[_CONTEXT[name]] = value
    return {
        "k": k,
        "context": context,
        "include_categories": lists.get("include_category"),
        "exclude_categories": lists.get("exclude_category"),
    }


def _credentials(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """The Bearer token and the tenant header, read as FastAPI's ``HTTPBearer`` (the first
    ``Authorization`` header) and ``Header`` read them; :class:`_Decline` for a repeated or
    overlong tenant header."""
    authorization = None
    tenant = None
    for name, value in headers:
        if name == b"authorization":
            if authorization is None:
                authorization = value.decode("latin-1")
        elif name == _TENANT:
            if tenant is not None:
                raise _Decline
            tenant = value.decode("latin-1")
            if len(tenant) > MAX_TENANT_CHARS:
                raise _Decline
    scheme, credentials = get_authorization_scheme_param(authorization)
    token = credentials if scheme.lower() == "bearer" and credentials else None
    return token, tenant
