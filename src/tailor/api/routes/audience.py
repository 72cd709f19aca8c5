"""Customer profiles and segments (scope ``admin``: they are for the back office and CRM)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path

from tailor.api.deps import AdminCaller
from tailor.api.state import TenantState

router = APIRouter(tags=["customers"])
UserId = Annotated[str, Path(min_length=1, max_length=128, description="Your id of the user.")]
NO_MODEL = (
    "no audience model is loaded: fit one with `tailor audience fit --model DIR` and start "
    "`tailor serve --audience DIR`"
)


def _service(tenant: TenantState):
    return tenant.engine("audience", NO_MODEL)


@router.get("/users/{user_id}/profile")
def get_profile(user_id: UserId, caller: AdminCaller) -> dict[str, Any]:
    """The customer's segment, cluster, churn risk with its reasons, P(alive), expected
    purchases and spend, and lifetime value (scored when the server started). 404 for a
    customer without purchases, without analytics consent, or erased."""
    from tailor.audience.service import may_profile

    tenant = caller.tenant
    service = _service(tenant)
    pseudonym = tenant.pseudonym(user_id)
    profile = service.profile(pseudonym)
    if profile is None or not may_profile(tenant.workspace.store, pseudonym):
        raise HTTPException(
            404, "no profile: the user has no purchases, no analytics consent, or was erased"
        )
    return profile


@router.get("/segments")
def get_segments(caller: AdminCaller) -> dict[str, Any]:
    """Each named segment's size, mean churn risk and lifetime value, and the clusters with
    what distinguishes them."""
    return _service(caller.tenant).segments()
