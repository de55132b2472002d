"""Neural MT with transformers seq2seq models: Marian (opus-mt), NLLB-200 and M2M100.

The production backend: any ``AutoModelForSeq2SeqLM`` checkpoint, from a hub id or a local
directory. ``model`` may be a template with ``{src}``/``{tgt}`` placeholders
(``Helsinki-NLP/opus-mt-{src}-{tgt}``) so one setting serves every language pair; each
direction's model is loaded once, on first use.

Multilingual checkpoints are driven by their own conventions, found in the tokenizer's
vocabulary: opus-mt multi-target models take a ``>>por<<``/``>>pt<<`` prefix token, NLLB uses
FLORES-200 codes (``por_Latn``) as source language and forced first token, M2M100 uses
``__pt__``. Inputs are sorted by length before batching (less padding), outputs restored to
input order; greedy or beam search is deterministic for a fixed model and batch.
"""

from __future__ import annotations

import re
import threading
import warnings
from dataclasses import dataclass
from typing import Any

from pairsift.models.translation.base import TranslationError, Translator

# ISO 639-1 -> FLORES-200 (NLLB) codes for the languages captions commonly come in.
# fmt: off
FLORES_CODES: dict[str, str] = {
    "ar": "arb_Arab", "bg": "bul_Cyrl", "bn": "ben_Beng", "ca": "cat_Latn", "cs": "ces_Latn",
    "da": "dan_Latn", "de": "deu_Latn", "el": "ell_Grek", "en": "eng_Latn", "es": "spa_Latn",
    "et": "est_Latn", "fa": "pes_Arab", "fi": "fin_Latn", "fr": "fra_Latn", "he": "heb_Hebr",
    "hi": "hin_Deva", "hr": "hrv_Latn", "hu": "hun_Latn", "id": "ind_Latn", "it": "ita_Latn",
    "ja": "jpn_Jpan", "ko": "kor_Hang", "lt": "lit_Latn", "lv": "lvs_Latn", "ms": "zsm_Latn",
    "nl": "nld_Latn", "no": "nob_Latn", "pl": "pol_Latn", "pt": "por_Latn", "ro": "ron_Latn",
    "ru": "rus_Cyrl", "sk": "slk_Latn", "sl": "slv_Latn", "sr": "srp_Cyrl", "sv": "swe_Latn",
    "ta": "tam_Taml", "th": "tha_Thai", "tr": "tur_Latn", "uk": "ukr_Cyrl", "ur": "urd_Arab",
    "vi": "vie_Latn", "zh": "zho_Hans",
}
# fmt: on
# ISO 639-1 -> ISO 639-3, for opus-mt multi-target prefixes such as ">>por<<".
ISO3_CODES: dict[str, str] = {code[:2]: flores[:3] for code, flores in FLORES_CODES.items()}
ISO3_CODES.update({"pt": "por", "es": "spa", "fr": "fra", "de": "deu", "zh": "zho"})
_OPUS_NAME = re.compile(r"opus-mt-(?:tc-[a-z]+-)?([a-z]{2,3})-([a-z]{2,3})$")


@dataclass
class _Loaded:
    tokenizer: Any
    model: Any
    vocab: frozenset[str]


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class MarianTranslator(Translator):
    def __init__(
        self,
        model: str,
        device: str = "cpu",
        batch_size: int = 16,
        num_beams: int = 4,
        max_new_tokens: int = 256,
        max_input_tokens: int = 512,
    ) -> None:
        if batch_size < 1 or num_beams < 1 or max_new_tokens < 1:
            raise ValueError("batch_size, num_beams and max_new_tokens must be positive")
        self.model = model
        self.name = f"marian:{model}"
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.max_input_tokens = max_input_tokens
        self._loaded: dict[str, _Loaded] = {}
        self._lock = threading.Lock()

    def model_for(self, source: str, target: str) -> str:
        return self.model.replace("{src}", source).replace("{tgt}", target)

    def supports(self, source: str, target: str) -> bool:
        """From the checkpoint's name where it says (``opus-mt-en-es``); multilingual and
        unnamed local checkpoints are trusted, and fail per batch if they cannot."""
        if "{src}" in self.model or "{tgt}" in self.model:
            return True
        match = _OPUS_NAME.search(self.model.rstrip("/").lower())
        if match is None:
            return True
        src, tgt = match.groups()
        src_ok = src in (source, ISO3_CODES.get(source)) or src in ("mul", "roa", "gem")
        tgt_ok = tgt in (target, ISO3_CODES.get(target)) or len(tgt) == 3
        return src_ok and tgt_ok

    def _load(self, name: str) -> _Loaded:
        with self._lock:
            if name not in self._loaded:
                from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

                try:
                    with warnings.catch_warnings():
                        # MarianTokenizer asks for sacremoses, an optional punctuation
                        # normaliser; sentencepiece alone tokenizes correctly.
                        warnings.filterwarnings("ignore", message=".*sacremoses")
                        tokenizer = AutoTokenizer.from_pretrained(name)
                    model = AutoModelForSeq2SeqLM.from_pretrained(name)
                except (OSError, ValueError) as exc:
                    raise TranslationError(
                        f"cannot load translation model {name!r}: {exc}"
                    ) from exc
                model.eval().to(self.device)
                self._loaded[name] = _Loaded(tokenizer, model, frozenset(tokenizer.get_vocab()))
            return self._loaded[name]

    def _conventions(self, loaded: _Loaded, source: str, target: str) -> tuple[str, dict[str, Any]]:
        """(text prefix, extra generate() kwargs) for the checkpoint's language convention."""
        tokenizer, vocab = loaded.tokenizer, loaded.vocab
        for token in (f">>{ISO3_CODES.get(target, target)}<<", f">>{target}<<"):
            if token in vocab:
                return token + " ", {}
        flores_src, flores_tgt = FLORES_CODES.get(source), FLORES_CODES.get(target)
        if flores_tgt is not None and flores_tgt in vocab:
            if flores_src is None:
                raise TranslationError(f"no FLORES-200 code for source language {source!r}")
            tokenizer.src_lang = flores_src
            return "", {"forced_bos_token_id": tokenizer.convert_tokens_to_ids(flores_tgt)}
        if f"__{target}__" in vocab:
            tokenizer.src_lang = source
            return "", {"forced_bos_token_id": tokenizer.convert_tokens_to_ids(f"__{target}__")}
        return "", {}

    def _translate(self, texts: list[str], source: str, target: str) -> list[str]:
        import torch

        loaded = self._load(self.model_for(source, target))
        order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
        out: list[str] = [""] * len(texts)
        with self._lock, torch.inference_mode():
            prefix, extra = self._conventions(loaded, source, target)
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                encoded = loaded.tokenizer(
                    [prefix + texts[i] for i in batch],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self.max_input_tokens,
                ).to(self.device)
                generated = loaded.model.generate(
                    **encoded,
                    num_beams=self.num_beams,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    **extra,
                )
                decoded = loaded.tokenizer.batch_decode(generated, skip_special_tokens=True)
                for i, text in zip(batch, decoded, strict=True):
                    out[i] = text.strip()
        return out

    def close(self) -> None:
        with self._lock:
            self._loaded.clear()
