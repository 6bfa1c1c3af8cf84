"""actionhooks: an action-hook delivery engine (capture, match, render, deliver at least once)."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
