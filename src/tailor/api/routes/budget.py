"""The advertising budget: a plan from the loaded media-mix model (scope ``admin``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from tailor.api.deps import AdminCaller
from tailor.api.state import TenantState
from tailor.budget.service import MAX_BUDGET

router = APIRouter(tags=["budget"])
NO_MODEL = (
    "no budget model is loaded: fit one with `tailor budget fit --model DIR` and start "
    "`tailor serve --budget DIR`"
)
MAX_CHANNELS = 50
MAX_PERIODS = 366
MAX_MONEY = MAX_BUDGET  # per period or in all
MAX_RELATIVE = 100.0
Channel = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Spend = Annotated[float, Field(ge=0, le=MAX_MONEY, allow_inf_nan=False)]
Ratio = Annotated[float, Field(ge=0, le=MAX_RELATIVE, allow_inf_nan=False)]


class PlanRequest(BaseModel):
    """A budget to split over the channels for the next ``horizon`` periods. Spends in
    ``bounds``, ``fixed`` and ``recent_spend`` are per period, in the data's currency."""

    model_config = ConfigDict(extra="forbid")

    budget: float = Field(
        ge=0.01, le=MAX_MONEY, allow_inf_nan=False, description="Total spend over the horizon."
    )
    horizon: int = Field(default=4, ge=1, le=MAX_PERIODS, description="Periods to plan.")
    bounds: dict[Channel, tuple[Spend | None, Spend | None]] | None = Field(
        default=None,
        max_length=MAX_CHANNELS,
        description="Per channel [minimum, maximum] spend per period, either null: "
        '{"search": [500, 2000]}.',
    )
    relative_bounds: tuple[Ratio, Ratio] | None = Field(
        default=None,
        description="[low, high] times each channel's recent average spend per period.",
    )
    fixed: dict[Channel, Spend] | None = Field(
        default=None, max_length=MAX_CHANNELS, description="Per channel spend per period, kept."
    )
    target_cpa: float | None = Field(
        default=None,
        gt=0,
        le=MAX_MONEY,
        allow_inf_nan=False,
        description="Most a conversion may cost.",
    )
    target_roas: float | None = Field(
        default=None,
        gt=0,
        le=MAX_RELATIVE * 1e4,
        allow_inf_nan=False,
        description="Least value / spend.",
    )
    value_per_conversion: float = Field(default=1.0, gt=0, le=MAX_MONEY, allow_inf_nan=False)
    quantile: float | None = Field(
        default=None, gt=0, lt=1, description="Maximize this quantile instead of the mean."
    )
    recent_spend: dict[Channel, Annotated[list[Spend], Field(max_length=MAX_PERIODS)]] | None = (
        Field(
            default=None,
            max_length=MAX_CHANNELS,
            description="Spend per channel since the model's data ended, oldest first: the "
            "carry-over in flight (default: the model's last periods only).",
        )
    )

    @model_validator(mode="after")
    def _one_target(self) -> PlanRequest:
        if self.target_cpa is not None and self.target_roas is not None:
            raise ValueError("target_cpa and target_roas: give one or the other, not both")
        return self


def _service(tenant: TenantState):
    return tenant.engine("budget", NO_MODEL)


@router.post("/budget/plan")
def post_plan(request: PlanRequest, caller: AdminCaller) -> dict[str, Any]:
    """The split of ``budget`` over the channels that maximizes the expected incremental
    conversions over the horizon (and the carry-over after it), with the recent split of
    spend as the reference. A constraint that cannot hold is 422 with what to change."""
    return _service(caller.tenant).plan(**request.model_dump())


@router.get("/budget/model")
def get_model(caller: AdminCaller) -> dict[str, Any]:
    """The loaded model: channels, data window, posterior summary (mean, sd, 94% HDI per
    parameter) and convergence diagnostics with the problems found."""
    return _service(caller.tenant).describe()
