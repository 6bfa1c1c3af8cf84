from __future__ import annotations

from actionhooks.cli import main

raise SystemExit(main())
