"""The router's and the quality page's tunables load through one reader."""

import pytest

from annotation.quality import QualitySettings
from routing.router.config import RouterSettings


@pytest.mark.parametrize(
    ("group", "name", "key", "value"),
    [
        (RouterSettings, "TANDEM_ROUTER", "folds", 3),
        (QualitySettings, "TANDEM_QUALITY", "min_items", 7),
    ],
)
def test_a_group_takes_its_overrides_and_refuses_a_typo(settings, group, name, key, value):
    setattr(settings, name, {key: value})
    assert getattr(group.load(), key) == value
    setattr(settings, name, {key + "s": value})
    with pytest.raises(ValueError, match=f"{name}: unknown settings {key}s"):
        group.load()
    setattr(settings, name, None)
    assert group.load() == group()
