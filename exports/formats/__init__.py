"""Export formats, one module each, behind ``ExportFormat`` (base.py)."""

from tandem.errors import InvalidInput

from .base import ExportFormat, ExportItem, FormatOptions
from .kto import KTOFormat
from .listwise_pairs import PAIR_MODES, ListwisePairsFormat
from .preference import PreferenceFormat
from .raw import RawFormat
from .reward import RewardFormat

FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (PreferenceFormat(), KTOFormat(), RewardFormat(), ListwisePairsFormat(), RawFormat())
}


def format_get(name: str, *, task_type: str) -> ExportFormat:
    """The format named ``name``, if it applies to the project's task type."""
    fmt = FORMATS.get(name)
    if fmt is None:
        raise InvalidInput(
            f"unknown format {name!r}; choose one of {', '.join(FORMATS)}",
            details={"format": name},
        )
    if task_type not in fmt.task_types:
        raise InvalidInput(
            f"the {name} format is for {' and '.join(fmt.task_types)} projects, not {task_type}",
            details={"format": name},
        )
    return fmt


__all__ = ["FORMATS", "PAIR_MODES", "ExportFormat", "ExportItem", "FormatOptions", "format_get"]
