"""Validation: each check's verdict, and the Beam DoFn's routing to the audit output."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from pairsift.models.records import PairSample, Status
from pairsift.transforms.validate import AUDIT_TAG, CaptionLimits, ValidatePairs, validate


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


def test_dofn_routes_every_pair_once() -> None:
    inputs = [sample("a", " a red square "), sample("b", ""), sample("c", "two blue circles")]
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create(inputs) | beam.ParDo(ValidatePairs(CaptionLimits())).with_outputs(AUDIT_TAG, main="ok")
        assert_that(out.ok | "okKeys" >> beam.Map(lambda s: (s.key, s.caption)),
                    equal_to([("a", "a red square"), ("c", "two blue circles")]), label="ok")
        assert_that(out[AUDIT_TAG] | beam.Map(lambda r: (r["key"], r["status"])),
                    equal_to([("b", "empty_caption")]), label="audit")
