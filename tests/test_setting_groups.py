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


def test_the_embedding_switch_comes_from_the_environment(tmp_path):
    """TANDEM_ROUTER_EMBEDDINGS=0 reaches RouterSettings through Tandem's real settings."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import django; django.setup(); from routing.router.config import RouterSettings;"
        " print(RouterSettings.load().embeddings)"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "tandem.settings",
        "DEBUG": "1",
        "TANDEM_VAR_DIR": str(tmp_path),
    }
    root = Path(__file__).resolve().parents[1]
    for value, expected in (("0", "False"), (None, "True")):
        extra = {} if value is None else {"TANDEM_ROUTER_EMBEDDINGS": value}
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=root,
            env=env | extra,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == expected
