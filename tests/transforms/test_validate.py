"""Validation: each check's verdict (pass 1 routes the pairs: tests/pipeline/test_pass1.py)."""

from __future__ import annotations

from pairsift.models.records import PairSample, Status
from pairsift.transforms.validate import CaptionLimits, validate


def sample(key: str, caption: str | None, image: bytes | None = b"img") -> PairSample:
    return PairSample(key, "00000", 0, image_bytes=image, image_format="png", caption=caption)


def test_verdicts() -> None:
    limits = CaptionLimits(max_chars=20)
    assert validate(sample("a", "a red square"), limits) == (True, None, None)
    assert validate(sample("b", "   "), limits)[1] == Status.EMPTY_CAPTION
    assert validate(sample("c", None), limits)[1] == Status.MISSING_CAPTION
    assert validate(sample("d", "x" * 21), limits)[1] == Status.BAD_CAPTION
    assert validate(sample("e", "\x00\x01\x02\x03abc"), limits)[1] == Status.BAD_CAPTION
    assert validate(sample("f", "ok", image=None), limits)[1] == Status.MISSING_IMAGE
    broken = sample("g", "ok")
    broken.error_status, broken.error = Status.READ_ERROR.value, "unsafe path"
    assert validate(broken, limits) == (False, Status.READ_ERROR, "unsafe path")
