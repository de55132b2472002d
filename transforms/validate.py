"""Caption and structure checks before any model runs.

Each check returns ``(keep, status, reason)``; the first failing check decides the pair's
audit status. Pixels are not touched here: the embed stage decodes each image exactly once.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from pairsift.models.records import PairSample, Status

Verdict = tuple[bool, Status | None, str | None]
PASS: Verdict = (True, None, None)


@dataclass(frozen=True)
class CaptionLimits:
    max_chars: int = 2000
    max_control_ratio: float = 0.1  # share of control/unassigned chars that marks binary junk


def check_reader(sample: PairSample, _: CaptionLimits) -> Verdict:
    if sample.error_status is not None:
        return False, Status(sample.error_status), sample.error
    return PASS


def check_image_present(sample: PairSample, _: CaptionLimits) -> Verdict:
    if not sample.image_bytes:
        return False, Status.MISSING_IMAGE, "image is empty or absent"
    return PASS


def check_caption(sample: PairSample, limits: CaptionLimits) -> Verdict:
    caption = sample.caption
    if caption is None:
        return False, Status.MISSING_CAPTION, "no caption"
    stripped = caption.strip()
    if not stripped:
        return False, Status.EMPTY_CAPTION, "caption is empty or whitespace"
    if len(caption) > limits.max_chars:
        return False, Status.BAD_CAPTION, f"caption has {len(caption)} chars > {limits.max_chars}"
    bad = sum(
        1 for ch in stripped
        if unicodedata.category(ch) in ("Cc", "Cn", "Cs", "Co") and ch not in "\n\t"
    )
    if bad / len(stripped) > limits.max_control_ratio:
        return False, Status.BAD_CAPTION, f"caption looks binary ({bad} control/unassigned chars)"
    return PASS


CHECKS: tuple[Callable[[PairSample, CaptionLimits], Verdict], ...] = (
    check_reader,
    check_image_present,
    check_caption,
)


def validate(sample: PairSample, limits: CaptionLimits) -> Verdict:
    for check in CHECKS:
        try:
            verdict = check(sample, limits)
        except Exception as exc:  # noqa: BLE001 - e.g. a caption that is not a string
            return False, Status.BAD_CAPTION, f"{check.__name__} failed: {type(exc).__name__}: {exc}"
        if not verdict[0]:
            return verdict
    return PASS
