"""Types every resource shares: UTC timestamps, database-safe integers, pages, plain acknowledgements."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

T = TypeVar("T")
# Request bodies take JSON types as they are: no "1" for 1, no 0 for false (the schema says so too).
STRICT = ConfigDict(strict=True)
# The largest integer SQLite and PostgreSQL (BIGINT) store; a larger one would crash the driver.
DB_INT_MAX = 2**63 - 1


def _utc(value: datetime) -> datetime:
    """Stored times are naive UTC; on the wire every timestamp carries its offset."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDateTime = Annotated[datetime, AfterValidator(_utc)]
DbInt = Annotated[int, Field(ge=0, le=DB_INT_MAX)]


class Page(BaseModel, Generic[T]):
    """One page of a collection; ``next_cursor`` is null on the last page."""

    data: list[T]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null at the end")


class Ack(BaseModel):
    """A plain acknowledgement (seeds/000's ``success`` + ``message``)."""

    success: Literal[True] = True
    message: str
