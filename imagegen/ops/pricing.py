"""Credits a job costs, by the APIDot price table: charged on success only.

| quality | 1K | 2K | 4K |
|---------|----|----|----|
| low     |  1 |  2 |  4 |
| medium  |  3 |  6 | 12 |
| high    | 12 | 24 | 48 |

A request without a (known) quality is priced as ``medium``, one without a (known) resolution as
``1K``. Custom ``WxH`` sizes are priced by their resolution like any other size. Other providers are
not priced in credits (OpenAI reports token ``usage`` instead).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imagegen.constants import DEFAULT_QUALITY, DEFAULT_RESOLUTION

#: The one priced provider.
PRICED_PROVIDER = "apidot"

CREDITS: Mapping[str, Mapping[str, int]] = {
    "low": {"1K": 1, "2K": 2, "4K": 4},
    "medium": {"1K": 3, "2K": 6, "4K": 12},
    "high": {"1K": 12, "2K": 24, "4K": 48},
}


def tier(quality: Any, resolution: Any) -> tuple[str, str]:
    """The ``(quality, resolution)`` a request is priced at, after the defaults for unknown values."""
    q = quality if isinstance(quality, str) and quality in CREDITS else DEFAULT_QUALITY
    r = resolution if isinstance(resolution, str) and resolution in CREDITS[q] else DEFAULT_RESOLUTION
    return q, r
