"""Rule-based translation through the Apertium CLI (Debian ``apertium`` + a language pair).

One ``apertium`` process translates a whole batch: captions are joined with a line holding
only ".", which Apertium treats as a sentence end. A bare newline is not a safe separator:
Apertium's structural transfer reorders words across it ("The big\\nred apple" ->
"La manzana\\nroja grande"). Captions are single lines (whitespace is collapsed before), so
the separator cannot occur inside one; if the output still splits into the wrong number of
pieces, the batch is retranslated one process per caption.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from pairsift.models.translation.base import BackendUnavailable, TranslationError, Translator

INSTALL_HINT = "apt-get install apertium apertium-eng-spa"
SEPARATOR = "\n.\n"
# ISO 639-1 -> the ISO 639-3 codes that Apertium's mode names use.
# fmt: off
APERTIUM_CODES: dict[str, str] = {
    "en": "eng", "es": "spa", "pt": "por", "ca": "cat", "fr": "fra", "it": "ita", "gl": "glg",
    "oc": "oci", "eu": "eus", "ro": "ron", "an": "arg", "ast": "ast", "de": "deu", "nl": "nld",
    "sv": "swe", "da": "dan", "no": "nob", "is": "isl", "cy": "cym", "br": "bre", "eo": "epo",
}
# fmt: on
# Apertium marks unknown words "*", generation errors "#" and ambiguous ones "@": -u drops
# the first, the others are stripped here (unless the caption itself uses the character, as in
# a hashtag) so they do not leak into captions.
_MARKS = {mark: re.compile(rf"(?<![^\s(\"'¿¡]){mark}(?=[^\W\d_])") for mark in "#@"}


class ApertiumTranslator(Translator):
    name = "apertium"

    def __init__(self, binary: str = "apertium", timeout_s: float = 120.0) -> None:
        path = shutil.which(binary)
        if path is None:
            raise BackendUnavailable(f"the apertium CLI is not installed: {INSTALL_HINT}")
        self.binary = path
        self.timeout_s = timeout_s
        self._modes: frozenset[str] | None = None

    @property
    def modes(self) -> frozenset[str]:
        """Installed translation directions, e.g. ``{"eng-spa", "spa-eng"}``."""
        if self._modes is None:
            listed = self._run(["-l"], "")
            self._modes = frozenset(line.strip() for line in listed.splitlines() if line.strip())
        return self._modes

    @staticmethod
    def mode_for(source: str, target: str) -> str | None:
        if source not in APERTIUM_CODES or target not in APERTIUM_CODES:
            return None
        return f"{APERTIUM_CODES[source]}-{APERTIUM_CODES[target]}"

    def supports(self, source: str, target: str) -> bool:
        mode = self.mode_for(source, target)
        return mode is not None and mode in self.modes

    def _run(self, args: list[str], text: str) -> str:
        try:
            done = subprocess.run(
                [self.binary, *args],
                input=text.encode("utf-8"),
                capture_output=True,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TranslationError(f"apertium timed out after {self.timeout_s:.0f}s") from exc
        if done.returncode != 0:
            detail = done.stderr.decode("utf-8", "replace").strip()[-300:]
            raise TranslationError(f"apertium {' '.join(args)} failed: {detail}")
        return done.stdout.decode("utf-8", "replace")

    def _translate(self, texts: list[str], source: str, target: str) -> list[str]:
        mode = self.mode_for(source, target)
        if mode is None or mode not in self.modes:
            raise TranslationError(
                f"apertium has no {source}->{target} pair installed (e.g. {INSTALL_HINT})"
            )
        pieces = self._run(["-u", mode], SEPARATOR.join(texts) + SEPARATOR).split(SEPARATOR)
        if len(pieces) != len(texts) + 1 or pieces[-1].strip():
            pieces = [self._run(["-u", mode], text) for text in texts] + [""]
        return [_tidy(out, text) for out, text in zip(pieces[:-1], texts, strict=True)]


def _tidy(output: str, source_text: str) -> str:
    """Strip marks and whitespace; keep the source's lower-case start (Apertium capitalises
    the first word after every sentence end, separators included)."""
    for mark, pattern in _MARKS.items():
        if mark not in source_text:
            output = pattern.sub("", output)
    text = " ".join(output.split())
    if text and source_text[:1].islower() and text[:1].isupper():
        text = text[:1].lower() + text[1:]
    return text
