"""Pydantic models of request bodies (validated: a bad field answers 422 naming it)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Portfolio size limit: a larger body is refused with 422 before any margin work.
MAX_POSITIONS = 5000
# Distinct instrument names per portfolio / what-if request (positions and order): each name is priced under every
# scenario, so the cost of a request grows with them; more are refused with 422 before any margin work.
MAX_NAMES = 1000
# Bounds of quantities and prices (documented in the schema, so a client knows them before sending)
MAX_QUANTITY = 1e12
MAX_PRICE = 1e12

Instrument = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$",
                                  description="instrument name as stored, e.g. BTC-PERP or BTC-USDT")]


def _finite(v: float | None, name: str) -> float | None:
    if v is not None and not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number")
    return v


class Position(BaseModel):
    """A position: signed quantity (long > 0, short < 0) in contracts / units of the instrument."""

    model_config = ConfigDict(extra="forbid")
    instrument: Instrument
    quantity: float = Field(ge=-MAX_QUANTITY, le=MAX_QUANTITY, json_schema_extra={"not": {"const": 0}},
                            description="signed quantity in units of the instrument (long > 0, short < 0; not 0)")
    price: float | None = Field(default=None, gt=0, le=MAX_PRICE,
                                description="mark price; default: the latest stored close")

    @field_validator("quantity")
    @classmethod
    def _q(cls, v: float) -> float:
        _finite(v, "quantity")
        if v == 0:
            raise ValueError("quantity must be non-zero (long > 0, short < 0)")
        if abs(v) > 1e12:
            raise ValueError("quantity must be at most 1e12 in absolute value")
        return v

    @field_validator("price")
    @classmethod
    def _p(cls, v: float | None) -> float | None:
        return _finite(v, "price")


class Portfolio(BaseModel):
    model_config = ConfigDict(extra="forbid")
    positions: list[Position] = Field(default_factory=list, max_length=MAX_POSITIONS,
                                      description=f"at most {MAX_POSITIONS} positions over at most {MAX_NAMES} "
                                                  "distinct instruments")
    method: Literal["risk_matrix", "standalone"] = Field(
        default="risk_matrix",
        description="risk_matrix: Deribit-style scenario margin over Deribit-named derivatives (BTC-PERP, "
                    "BTC-27DEC24, BTC-27DEC24-70000-C); standalone: published IM/MM rates x |notional|, no offsets")
    flat_vol: float | None = Field(default=None, gt=0, le=5, description="implied vol for options with no quote")
    spot: dict[Annotated[str, Field(pattern=r"^[A-Z0-9]{1,16}$")],
               Annotated[float, Field(gt=0, le=MAX_PRICE)]] | None = Field(
        default=None, max_length=100, description="spot overrides per underlying, e.g. {\"BTC\": 68000}")

    @field_validator("positions")
    @classmethod
    def _names(cls, v: list[Position]) -> list[Position]:
        _check_names({p.instrument for p in v})
        return v

    @field_validator("flat_vol")
    @classmethod
    def _fv(cls, v: float | None) -> float | None:
        return _finite(v, "flat_vol")


def _check_names(names: set[str]) -> None:
    if len(names) > MAX_NAMES:
        raise ValueError(f"at most {MAX_NAMES} distinct instruments per request (this one names {len(names)}); "
                         "split the book")


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instrument: Instrument
    side: Literal["buy", "sell"]
    quantity: float = Field(gt=0, le=MAX_QUANTITY, description="order size (> 0); the side gives the sign")
    price: float | None = Field(default=None, gt=0, le=MAX_PRICE,
                                description="limit / expected fill price; default: last close")

    @field_validator("quantity", "price")
    @classmethod
    def _f(cls, v: float | None) -> float | None:
        return _finite(v, "value")

    @property
    def signed_quantity(self) -> float:
        return self.quantity if self.side == "buy" else -self.quantity


class LimitsModel(BaseModel):
    """Pre-trade limits in contracts (margincal.margin.limits)."""

    model_config = ConfigDict(extra="forbid")
    position_limits: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict, max_length=1000, description="per-account max |position| per instrument")
    oi_caps: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict, max_length=1000, description="max open interest per instrument")
    open_interest: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict, max_length=1000, description="current open interest per instrument")


class WhatIfRequest(Portfolio):
    order: Order

    @model_validator(mode="after")
    def _names_with_order(self) -> WhatIfRequest:
        _check_names({p.instrument for p in self.positions} | {self.order.instrument})
        return self
    limits: LimitsModel | None = Field(default=None, description="refuse an order that breaches these limits")
    collateral: dict[Annotated[str, Field(pattern=r"^[A-Z0-9]{1,16}$")], float] | None = Field(
        default=None, max_length=50,
        description="collateral balances per currency, e.g. {\"USDT\": 20000, \"BTC\": 0.5}: adds the account view")
    haircuts: dict[Annotated[str, Field(pattern=r"^[A-Z0-9]{1,16}$")], Annotated[float, Field(ge=0, le=1)]] | None = (
        Field(default=None, max_length=50, description="collateral haircuts (fractions) per currency"))


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str | None = Field(default=None, max_length=2000)


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["viewer", "trader", "risk_officer", "admin"]
    name: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^ *[A-Za-z0-9][A-Za-z0-9 ._@-]*$",
                             description="the holder's name (its identity: unique, not a reserved system name)")


class PolicyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    toml: str = Field(min_length=1, max_length=200_000, description="the whole policy file (TOML)")


class ErrorItem(BaseModel):
    """One validation problem: where (``loc``), what rule (``type``) and the message."""

    loc: list[str | int] = Field(description="path of the offending field, e.g. [\"body\", \"positions\", 0]")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """The error envelope of every 4xx/5xx answer (never a stack trace)."""

    error: str = Field(description="machine-readable kind: unauthorized, forbidden, not_found, conflict, "
                                   "payload_too_large, validation_error, invalid_request, internal_error, unavailable...")
    detail: str | list[ErrorItem] | Any = Field(
        default=None, description="what was wrong: a sentence, or the list of invalid fields (422 validation_error)")
    request_id: str = Field(description="quote it to the operator; the server log holds the details under it")
