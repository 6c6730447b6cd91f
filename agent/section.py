"""The base of every settings section: immutable, strict, documented field by field."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config table: unknown keys and wrong types are errors that name the key."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True,
                              use_attribute_docstrings=True)
