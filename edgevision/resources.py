"""Where recipes/, targets/ and calibration/ are: inside an installed wheel, or at the source checkout root."""

from __future__ import annotations

from pathlib import Path

from edgevision.errors import EdgevisionError

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    for candidate in (_PACKAGE / "_resources" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise EdgevisionError(f"edgevision's {name}/ folder is missing from the installation; reinstall edgevision")
