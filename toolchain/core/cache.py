"""edgeprune's own cache folder, shared by everything that keeps derived files or run-time state."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str) -> Path:
    """edgeprune's own cache folder for ``kind`` (``$EDGEPRUNE_CACHE/kind``, default ``~/.cache/edgeprune/kind``).

    Why: things derived from a user's files (reference exports, measured tables) are reused
    between runs, but never written into the user's folders.
    """
    root = Path(os.environ.get("EDGEPRUNE_CACHE") or Path.home() / ".cache" / "edgeprune")
    folder = root / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder
