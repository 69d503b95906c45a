"""The sweep file (YAML or JSON): what to vary, over which base instance, with which objectives and limits."""
from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Limits(BaseModel):
    """Per point. A deterministic limit by default, so a sweep's table does not depend on the machine's load."""
    model_config = ConfigDict(extra="forbid")
    deterministic_time: Optional[float] = Field(10.0, gt=0, le=10**7)
    """CP-SAT deterministic seconds per point (summed over its segments)."""
    time_limit: Optional[float] = Field(None, gt=0, le=10**7)
    """Wall-clock seconds per point, if wanted as well (the table then depends on the machine's load)."""


class Make(BaseModel):
    """A `mapsolve make` generator and its arguments, as on the command line (`seq: 1024`, `arch: flat-edge`)."""
    model_config = ConfigDict(extra="allow")
    kind: str
    """attention, butterfly or hybrid."""


class Sweep(BaseModel):
    """A sweep: the base instance, then every point of `grid` (the cartesian product of its lists) and every entry
    of `list`, each solved for every objective."""
    model_config = ConfigDict(extra="forbid")
    base: Optional[str] = None
    """An instance file, relative to the sweep file."""
    make: Optional[Make] = None
    """Or a generator: its arguments may be swept as `make.ARG`."""
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    """Dotted path -> values; levels and compute units are addressed by name
    (`architecture.levels.GLB.capacity_words`), other lists by index."""
    list_: list[dict[str, Any]] = Field(default_factory=list, alias="list")
    """Explicit points: dotted path -> value each (combined with every grid point, if both are given)."""
    objectives: list[str] = Field(default_factory=lambda: ["energy"], min_length=1)
    """Any objective `mapsolve solve` takes (energy, latency, energy,latency, latency,energy, edp)."""
    limits: Limits = Field(default_factory=Limits)

    @model_validator(mode="after")
    def _one_base(self):
        if (self.base is None) == (self.make is None):
            raise ValueError("give exactly one of base (an instance file) and make (a generator)")
        return self
