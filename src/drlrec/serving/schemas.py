"""Request and response bodies of the API (pydantic)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: Largest id accepted for users, items and categories (validate.max_id's default).
MAX_ID = 2**62


class RecommendedItem(BaseModel):
    item_id: int
    category_id: int
    score: float


class Recommendations(BaseModel):
    user_id: int
    items: list[RecommendedItem]
    model_version: str | None = Field(description="registry version of the model that ranked (or whose popularity list was used)")
    variant: str = Field(description="A/B variant of the user")
    cached: bool
    fallback: Literal["cold_start", "model_error", "no_model"] | None = Field(
        description="why the list is not the model's ranking (None: it is, or the variant's policy is popularity)"
    )


class Interaction(BaseModel):
    """An interaction in the raw data's schema; timestamp defaults to the time it is received."""

    model_config = ConfigDict(extra="forbid")

    user_id: int = Field(ge=0, le=MAX_ID)
    item_id: int = Field(ge=0, le=MAX_ID)
    category_id: int = Field(ge=0, le=MAX_ID)
    behavior_type: Literal["pv", "cart", "fav", "buy"]
    timestamp: int | None = Field(default=None, ge=0, le=2**62)


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    user_id: int
    variant: str


class Reload(BaseModel):
    changed: dict[str, dict[str, str | None]]
    versions: dict[str, str | None]
    errors: dict[str, str]


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    ready: bool
    models: dict[str, str | None]
    errors: dict[str, str] = {}
