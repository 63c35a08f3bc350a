"""One module per screen; this package maps controller modes to the screen shown at the root.

Owns: `ROOT_FOR_MODE`. Screens are imported where they are first shown.
"""

from __future__ import annotations

ROOT_FOR_MODE: dict[str, str] = {
    "idle": "attract",
    "shopping": "catalog",
    "payment": "payment",
    "dispensing": "dispensing",
    "done": "done",
    "problem": "problem",
    "out_of_service": "out_of_service",
}
