"""The README's configuration table names every setting the gateway reads."""

from __future__ import annotations

from acestream_gateway.settings import Settings
from tests.support import ROOT


def test_every_setting_has_a_row_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in readme]
    assert missing == []
