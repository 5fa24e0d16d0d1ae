"""Typed groups of tunables, each overridable by one dict setting (``TANDEM_ROUTER``, ...).

The router and the quality page each have a handful of thresholds. Reading them through one
loader means an unknown key (a typo in the environment) fails loudly the same way everywhere
instead of being silently ignored in one place.
"""

from dataclasses import fields
from typing import ClassVar, Self


class SettingGroup:
    """Base of a frozen dataclass of defaults; ``setting`` names the dict that overrides them."""

    setting: ClassVar[str]

    @classmethod
    def load(cls) -> Self:
        from django.conf import settings

        overrides = getattr(settings, cls.setting, {}) or {}
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"{cls.setting}: unknown settings {', '.join(sorted(unknown))}")
        return cls(**overrides)
