"""The router's thresholds in one typed object, overridable through ``settings.TANDEM_ROUTER``."""

from dataclasses import dataclass
from typing import ClassVar

from tandem.setting_groups import SettingGroup


@dataclass(frozen=True)
class RouterSettings(SettingGroup):
    setting: ClassVar[str] = "TANDEM_ROUTER"

    # A judge verdict with a confidence below this counts as uncertain.
    low_confidence: float = 0.6
    # Share of a project's items that always get both a human and a judge label.
    calibration_share: float = 0.05
    # Folds of the cross-fitting: an item's score comes from a model fitted without it.
    folds: int = 5
    # The learned policy is not fitted on fewer labelled items than this.
    min_training_items: int = 30
    # Retrain after this many new calibration items got their human label.
    retrain_every: int = 25
    # The candidates' embedding similarity (``embed_cosine``) when the ``embeddings`` extra is
    # installed: about 1-2 ms of CPU per candidate, far the largest cost of routing many items.
    embeddings: bool = True
