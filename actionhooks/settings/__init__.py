"""Engine settings: one strict model (model.py) and its layered loader (loader.py)."""

from __future__ import annotations

from actionhooks.errors import SettingsError, SettingsProblem
from actionhooks.settings.loader import environment_warnings, load_settings
from actionhooks.settings.model import Settings

__all__ = ["Settings", "SettingsError", "SettingsProblem", "environment_warnings", "load_settings"]
