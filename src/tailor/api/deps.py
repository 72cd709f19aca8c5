"""What routes declare they need: the caller's key with a scope, their tenant, limits.

Every dependency here is ``async``: they do no blocking work (a key file's ``stat``, a
dictionary lookup), and FastAPI would run a plain ``def`` one in its thread pool, a hop
that cost the recommendation route about a fifth of its time.

``Caller`` resolves, in order: the Bearer key (401 without or with an unknown key), its rate
limit (429 with ``Retry-After``), the scope (403), the tenant named by ``X-Tailor-Tenant``
(default ``default``; 404 for a tenant the key may not reach, exactly as for one that does
not exist, so keys cannot probe for other shops).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tailor.api.keys import ApiKey, Scope
from tailor.api.limits import retry_after_header
from tailor.api.state import AppState, TenantState

TENANT_HEADER = "X-Tailor-Tenant"
MAX_TENANT_CHARS = 64
_bearer = HTTPBearer(auto_error=False, description="An API key: `tlr_<id>_<secret>`.")


async def get_app_state(request: Request) -> AppState:
    return request.app.state.tailor


AppStateDep = Annotated[AppState, Depends(get_app_state)]
TenantHeader = Annotated[
    str | None,
    Header(
        alias=TENANT_HEADER,
        description="The tenant (shop) the request is for; default `default`.",
        max_length=MAX_TENANT_CHARS,
    ),
]


@dataclass(frozen=True)
class Caller:
    """An authenticated, authorized request: its key and its tenant's state."""

    key: ApiKey
    tenant: TenantState

    @property
    def tenant_name(self) -> str:
        return self.tenant.name


def authorize(state: AppState, token: str | None, tenant: str | None, scope: Scope) -> Caller:
    """The :class:`Caller` of a request bearing ``token`` for ``tenant`` that needs ``scope``,
    or the ``HTTPException`` to answer (see the module docstring for the order of checks).

    One function for the dependency below and the recommendation fast path
    (:mod:`tailor.api.fastpath`), so both refuse exactly alike.
    """
    keys = state.keys
    keys.reload_if_changed()
    key = keys.authenticate(token) if token is not None else None
    if key is None:
        raise HTTPException(
            401,
            "a valid API key is required: send 'Authorization: Bearer tlr_...'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    wait = state.limiter.acquire(key.key_id, key.rate_per_s, key.burst)
    if wait is not None:
        raise HTTPException(
            429,
            f"rate limit of key {key.key_id} reached ({key.rate_per_s:g}/s, burst "
            f"{key.burst}); retry later",
            headers={"Retry-After": retry_after_header(wait)},
        )
    if not key.allows(scope):
        raise HTTPException(403, f"this key lacks the {scope!r} scope")
    name = tenant or state.default_tenant
    found = state.tenants.get(name)
    if found is None or not key.may_access(name):
        raise HTTPException(404, f"no tenant {name!r} for this key")
    return Caller(key, found)


def require(scope: Scope):
    """A dependency resolving the request's :class:`Caller` for ``scope``."""

    async def dependency(
        state: AppStateDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        tenant: TenantHeader = None,
    ) -> Caller:
        token = credentials.credentials if credentials is not None else None
        return authorize(state, token, tenant, scope)

    dependency.__name__ = f"require_{scope}"
    return dependency


IngestCaller = Annotated[Caller, Depends(require("ingest"))]
RecommendCaller = Annotated[Caller, Depends(require("recommend"))]
AdminCaller = Annotated[Caller, Depends(require("admin"))]


async def tenant_for_probe(state: AppStateDep, tenant: TenantHeader = None) -> TenantState:
    """The tenant of an unauthenticated probe (``/v1/ready``)."""
    found = state.tenants.get(tenant or state.default_tenant)
    if found is None:
        raise HTTPException(404, f"no tenant {tenant!r}")
    return found


ProbeTenant = Annotated[TenantState, Depends(tenant_for_probe)]


async def limited_k(
    state: AppStateDep,
    k: Annotated[int, Query(ge=1, description="How many items (at most api.max_k).")] = 10,
) -> int:
    if k > state.api.max_k:
        raise HTTPException(422, f"k: at most {state.api.max_k} items per request, got {k}")
    return k


K = Annotated[int, Depends(limited_k)]
