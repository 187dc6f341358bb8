"""What the registries share about parameter models: their description and their errors.

Every pluggable part (market mechanisms, EMS policies, forecasters) declares its parameters as a
pydantic model; `param_infos` describes such a model for the CLI's listings, and
`params_error_text` turns a validation error into a message that names each parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined


@dataclass(frozen=True)
class ParamInfo:
    """One parameter, as declared in a pydantic parameter model.

    Attributes:
        name: parameter key (as in the scenario TOML / CLI).
        type: the annotation, as text (e.g. "Literal['midpoint', 'marginal_bid']").
        required: True when the parameter has no default.
        default: the default value; None when required.
        description: what the parameter means, with its unit.
    """

    name: str
    type: str
    required: bool
    default: Any
    description: str


def param_infos(model: type[BaseModel]) -> tuple[ParamInfo, ...]:
    """Every field of a parameter model, in declaration order."""
    infos = []
    for key, f in model.model_fields.items():
        required = f.is_required()
        default = None if required or f.default is PydanticUndefined else f.get_default()
        annotation = f.annotation
        type_text = (
            annotation.__name__
            if isinstance(annotation, type)
            else str(annotation).removeprefix("typing.")
        )
        infos.append(ParamInfo(key, type_text, required, default, f.description or ""))
    return tuple(infos)


def params_error_text(exc: ValidationError, prefix: str, owner: str) -> str:
    """`prefix.field: reason; ... (owner)` for every error of a parameter validation."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown parameter"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        parts.append(f"{prefix}.{loc}: {msg}" if loc else f"{prefix}: {msg}")
    return "; ".join(parts) + f" ({owner})"
