"""Noise protocols of the noisy-correspondence literature, applied by pair index.

- ``caption``: per-caption shuffle (NCR): a noisy pair keeps its image and gets another
  noisy pair's caption (its translations travel with it).
- ``image``: per-image shuffle (DECL): a noisy pair keeps its caption and gets another noisy
  pair's image.
- ``partial``: one content word (colour, shape, count, object noun) replaced.
- ``translation``: the target-language caption replaced by another pair's, or corrupted with
  word drops and substitutions; the English caption stays correct.
- ``neighbour``: a near-miss caption: the caption of another item of the same near-miss group,
  which the data defines (another stamp of the same category, a scene that differs only in
  colour), never an embedding, so that a test of it is not circular.
- ``mixed``: a third each of caption shuffle, neighbour and partial noise.

A plan is a few O(N) integer arrays derived from a seeded permutation, so a streaming builder
can fetch the partner's caption or image by index while writing shard by shard. Shuffles are
derangements *by group*: a noisy pair is never matched to itself nor to an item with an
identical caption (same group), otherwise it would not be noisy at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

NOISE_MODES: tuple[str, ...] = ("caption", "image", "partial", "translation", "neighbour", "mixed")
NOISE_KINDS: dict[str, str] = {
    "caption": "caption_shuffle",
    "image": "image_shuffle",
    "partial": "partial",
    "translation": "translation",
    "neighbour": "neighbour",
}
MIXED_PARTS: tuple[str, ...] = ("caption", "neighbour", "partial")
_REPAIR_ATTEMPTS = 64


@dataclass
class NoisePlan:
    """Which pairs are noisy and with which partner. ``partner[i] == -1`` means none."""

    mode: str
    rate: float
    seed: int
    noisy: np.ndarray  # bool[N]
    partner: np.ndarray  # int64[N]: caption/image donor for shuffles
    trans_partner: dict[str, np.ndarray] = field(default_factory=dict)  # lang -> int64[N]
    trans_replace: np.ndarray | None = None  # bool[N]: replace (True) or corrupt (False)
    part: np.ndarray | None = None  # mixed: each noisy pair's own mode (index into MIXED_PARTS)
    fallbacks: int = 0  # neighbour partners drawn outside the near-miss group (none was left)

    @property
    def size(self) -> int:
        return int(self.noisy.shape[0])

    def mode_of(self, index: int) -> str:
        """The noise a noisy pair carries (a mixed plan's part for that pair)."""
        if self.mode == "mixed" and self.part is not None:
            return MIXED_PARTS[int(self.part[index])]
        return self.mode

    def kind(self, index: int) -> str:
        return NOISE_KINDS[self.mode_of(index)] if self.noisy[index] else "none"

    def takes_caption(self, index: int) -> bool:
        """Whether a noisy pair carries its partner's caption (shuffle or near miss)."""
        return bool(self.noisy[index]) and self.mode_of(index) in ("caption", "neighbour")

    def image_rows(self) -> np.ndarray:
        """Row of the clean image each pair shows (identity except for image shuffle)."""
        rows = np.arange(self.size, dtype=np.int64)
        if self.mode == "image":
            rows[self.noisy] = self.partner[self.noisy]
        return rows

    def text_rows(self) -> np.ndarray:
        """Row of the clean caption each pair carries (identity except for caption shuffle)."""
        rows = np.arange(self.size, dtype=np.int64)
        takes = np.fromiter((self.takes_caption(i) for i in range(self.size)), dtype=bool,
                            count=self.size)
        rows[takes] = self.partner[takes]
        return rows

    def ratio(self, mask: np.ndarray | None = None) -> float:
        noisy = self.noisy if mask is None else self.noisy[mask]
        return float(noisy.mean()) if noisy.size else 0.0


def clean_plan(size: int, seed: int = 0) -> NoisePlan:
    return NoisePlan(
        "caption", 0.0, seed, np.zeros(size, dtype=bool), np.full(size, -1, dtype=np.int64)
    )


def select_noisy(candidates: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """``round(rate * len(candidates))`` candidates chosen uniformly, sorted."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"noise rate must be in [0, 1], got {rate}")
    count = int(round(rate * len(candidates)))
    chosen = rng.choice(np.asarray(candidates, dtype=np.int64), size=count, replace=False)
    return np.sort(chosen)


def derange(
    members: np.ndarray,
    groups: np.ndarray,
    rng: np.random.Generator,
    pool: np.ndarray | None = None,
) -> np.ndarray:
    """Partners for ``members``: a permutation of them with no item mapped into its own group.

    One random cycle through the members (no fixed points), then random swaps repair pairs
    whose partner shares their group (an identical caption). Where no valid swap exists
    (one group dominates the members) a partner is drawn from ``pool`` instead.
    Returns ``partner`` aligned with ``members``.
    """
    members = np.asarray(members, dtype=np.int64)
    m = members.size
    if m == 0:
        return np.empty(0, dtype=np.int64)
    order = rng.permutation(members)
    partners = np.roll(order, -1)
    bad = np.flatnonzero(groups[order] == groups[partners]) if m > 1 else np.array([0])
    unresolved: list[int] = []
    for k in bad:
        if m > 1 and groups[order[k]] != groups[partners[k]]:
            continue  # fixed by an earlier swap
        if not _repair(k, order, partners, groups, rng):
            unresolved.append(int(k))
    if unresolved:
        _fallback(unresolved, order, partners, groups, rng, members if pool is None else pool)
    result = np.empty(m, dtype=np.int64)
    position = np.argsort(order, kind="stable")
    sorted_members = order[position]
    index = np.searchsorted(sorted_members, members)
    result[:] = partners[position][index]
    return result


def _repair(
    k: int, order: np.ndarray, partners: np.ndarray, groups: np.ndarray, rng: np.random.Generator
) -> bool:
    m = order.size
    if m < 2:
        return False
    for _ in range(_REPAIR_ATTEMPTS):
        j = int(rng.integers(m))
        if j == k:
            continue
        if groups[order[k]] != groups[partners[j]] and groups[order[j]] != groups[partners[k]]:
            partners[k], partners[j] = partners[j], partners[k]
            return True
    return False


def _fallback(
    unresolved: list[int],
    order: np.ndarray,
    partners: np.ndarray,
    groups: np.ndarray,
    rng: np.random.Generator,
    pool: np.ndarray,
) -> None:
    pool = np.asarray(pool, dtype=np.int64)
    for k in unresolved:
        choices = pool[groups[pool] != groups[order[k]]]
        if choices.size == 0:
            raise ValueError(
                "cannot inject shuffle noise: every candidate pair has the same caption"
            )
        partners[k] = choices[int(rng.integers(choices.size))]


def make_plan(
    groups: np.ndarray,
    candidates: np.ndarray,
    mode: str,
    rate: float,
    seed: int,
    lang_masks: dict[str, np.ndarray] | None = None,
    near_miss: np.ndarray | None = None,
) -> NoisePlan:
    """Build the plan for ``mode`` at ``rate`` over ``candidates`` (e.g. the train split).

    ``groups[i]`` is item i's semantic group; ``lang_masks[lang][i]`` says whether item i has
    a translation in ``lang`` (translation noise only touches pairs that have one);
    ``near_miss[i]`` its near-miss group (neighbour and mixed noise).
    """
    if mode not in NOISE_MODES:
        raise ValueError(f"unknown noise mode {mode!r}: expected one of {', '.join(NOISE_MODES)}")
    size = int(groups.shape[0])
    rng = np.random.default_rng([seed, NOISE_MODES.index(mode)])
    candidates = np.asarray(candidates, dtype=np.int64)
    partner = np.full(size, -1, dtype=np.int64)
    noisy = np.zeros(size, dtype=bool)
    plan = NoisePlan(mode, rate, seed, noisy, partner)
    if mode == "translation":
        if not lang_masks:
            raise ValueError("translation noise needs at least one target language (--langs)")
        has_any = np.zeros(size, dtype=bool)
        for mask in lang_masks.values():
            has_any |= mask
        candidates = candidates[has_any[candidates]]
    chosen = select_noisy(candidates, rate, rng)
    noisy[chosen] = True
    if mode in ("caption", "image") and chosen.size:
        partner[chosen] = derange(chosen, groups, rng, pool=candidates)
    if mode in ("neighbour", "mixed"):
        if near_miss is None:
            raise ValueError(f"{mode} noise needs a source that defines near misses "
                             "(tuxpaint: the stamp's category; synth: the scene's layout)")
        _plan_near_misses(plan, chosen, candidates, groups, near_miss, rng)
    if mode == "translation":
        plan.trans_replace = np.zeros(size, dtype=bool)
        plan.trans_replace[chosen] = rng.random(chosen.size) < 0.5
        for lang in sorted(lang_masks or {}):
            mask = lang_masks[lang]
            members = chosen[mask[chosen]]
            lang_partner = np.full(size, -1, dtype=np.int64)
            if members.size:
                pool = candidates[mask[candidates]]
                lang_partner[members] = derange(members, groups, rng, pool=pool)
            plan.trans_partner[lang] = lang_partner
    return plan


def _plan_near_misses(
    plan: NoisePlan, chosen: np.ndarray, candidates: np.ndarray, groups: np.ndarray,
    near_miss: np.ndarray, rng: np.random.Generator,
) -> None:
    """Partners of neighbour noise: a random candidate of the same near-miss group with
    another caption; where the group has none, a random candidate with another caption
    (counted in ``plan.fallbacks``). A mixed plan splits ``chosen`` into thirds first."""
    members = chosen
    if plan.mode == "mixed":
        plan.part = np.full(plan.size, -1, dtype=np.int64)
        plan.part[chosen] = rng.permutation(np.arange(chosen.size) % len(MIXED_PARTS))
        shuffled = chosen[plan.part[chosen] == MIXED_PARTS.index("caption")]
        if shuffled.size:
            plan.partner[shuffled] = derange(shuffled, groups, rng, pool=candidates)
        members = chosen[plan.part[chosen] == MIXED_PARTS.index("neighbour")]
    by_group: dict[int, np.ndarray] = {}
    order = np.argsort(near_miss[candidates], kind="stable")
    sorted_candidates = candidates[order]
    keys, starts = np.unique(near_miss[sorted_candidates], return_index=True)
    for key, block in zip(keys.tolist(), np.split(sorted_candidates, starts[1:]), strict=True):
        by_group[key] = block
    for i in members.tolist():
        pool = by_group.get(int(near_miss[i]), candidates)
        pool = pool[groups[pool] != groups[i]]
        if pool.size == 0:
            pool = candidates[groups[candidates] != groups[i]]
            plan.fallbacks += 1
        if pool.size == 0:
            raise ValueError("cannot inject neighbour noise: every candidate has the same caption")
        plan.partner[i] = pool[int(rng.integers(pool.size))]


def pair_rng(seed: int, index: int, salt: int = 0) -> np.random.Generator:
    """Per-pair generator: the edit of pair i does not depend on which shard writes it."""
    return np.random.default_rng([seed, 1_000 + salt, index])


# --- text edits ------------------------------------------------------------------------

COLOUR_WORDS = (
    "red", "green", "blue", "yellow", "orange", "purple", "pink", "black", "white", "grey",
    "gray", "brown",
)
COUNT_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
SHAPE_WORDS = ("circle", "square", "triangle", "diamond", "star", "rectangle", "heart")
_WORD = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*")


def _match_case(word: str, template: str) -> str:
    return word.capitalize() if template[:1].isupper() else word


def _fix_article(tokens: list[str], position: int) -> None:
    """Keep "a"/"an" agreeing with the word that now follows it."""
    for back in range(position - 1, -1, -1):
        token = tokens[back]
        if token.strip() == "":
            continue
        if token.lower() in ("a", "an"):
            vowel = tokens[position][:1].lower() in "aeiou"
            tokens[back] = _match_case("an" if vowel else "a", token)
        return


def replace_content_word(
    caption: str, rng: np.random.Generator, nouns: list[str]
) -> tuple[str, str]:
    """Replace one content word (colour, count, shape or known object noun) by another.

    Returns the new caption and a ``category:old->new`` detail. A caption with no known
    content word gets its last word replaced by a different object noun.
    """
    categories: list[tuple[str, tuple[str, ...]]] = [
        ("colour", COLOUR_WORDS), ("count", COUNT_WORDS), ("shape", SHAPE_WORDS),
        ("noun", tuple(sorted(set(nouns)))),
    ]
    tokens = re.split(r"([A-Za-z]+(?:-[A-Za-z]+)*)", caption)
    slots: list[tuple[int, str, tuple[str, ...]]] = []
    for position, token in enumerate(tokens):
        if not _WORD.fullmatch(token or ""):
            continue
        for name, words in categories:
            if token.lower() in words and len(words) > 1:
                slots.append((position, name, words))
                break
    if not slots:
        words_at = [p for p, t in enumerate(tokens) if _WORD.fullmatch(t or "")]
        pool = categories[3][1] or SHAPE_WORDS
        if not words_at:
            raise ValueError(f"caption has no word to replace: {caption!r}")
        slots = [(words_at[-1], "noun", pool)]
    position, name, words = slots[int(rng.integers(len(slots)))]
    old = tokens[position]
    options = [w for w in words if w != old.lower()]
    new = options[int(rng.integers(len(options)))]
    tokens[position] = _match_case(new, old)
    _fix_article(tokens, position)
    return "".join(tokens), f"{name}:{old.lower()}->{new}"


def corrupt_text(text: str, donor: str, rng: np.random.Generator) -> str:
    """Drop about a third of the words and substitute one with a word of ``donor``.

    Models a broken machine translation: fluent-looking but not saying the same thing.
    """
    words = text.split()
    donor_words = [w for w in donor.split() if w not in words] or ["?"]
    kept = [w for w in words if rng.random() >= 0.35] or words[:1]
    position = int(rng.integers(len(kept)))
    kept[position] = donor_words[int(rng.integers(len(donor_words)))]
    result = " ".join(kept)
    if result == text:
        return donor
    return result
