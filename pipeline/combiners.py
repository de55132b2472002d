"""Beam pieces for values that add up (histograms, tallies): their sum, and its JSON file."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import apache_beam as beam


class SumOf(beam.CombineFn):
    """Sums elements with ``+``, starting from ``empty()``: integer counts, so any merge order
    gives the same result."""

    def __init__(self, empty: Callable[[], Any]) -> None:
        self.empty = empty

    def create_accumulator(self) -> Any:
        return self.empty()

    def add_input(self, acc: Any, element: Any) -> Any:
        return acc + element

    def merge_accumulators(self, accumulators: Iterable[Any]) -> Any:
        total = self.empty()
        for acc in accumulators:
            total = total + acc
        return total

    def extract_output(self, acc: Any) -> Any:
        return acc


class WriteSum(beam.DoFn):
    """Writes the summed value (anything with ``to_dict`` and ``pairs``) as one JSON file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def process(self, total: Any) -> Iterator[int]:
        from pairsift.models.storage.atomic import write_json

        write_json(self.path, total.to_dict())
        yield total.pairs
