"""Shared schema pieces: the strict base model and the error document."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """Base of every request body: unknown fields are a 400 naming the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Out(BaseModel):
    """Base of every response body."""

    model_config = ConfigDict(frozen=True)


#: a resource name: what an operator types on the command line
Name = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
#: a project id (opaque to pcifleet)
Project = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\s]+$")]


class ErrorItem(Out):
    """One error: ``code`` is stable (``pcifleet.<area>.<rule>``); ``detail`` is for humans."""

    status: int
    code: str
    title: str
    detail: str
    #: structured facts of the error (the field and rule of invalid input, ...)
    meta: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class ErrorDocument(Out):
    errors: list[ErrorItem]
