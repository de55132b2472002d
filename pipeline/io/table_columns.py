"""Which column of a table is the key, the image and the caption: names matched without
regard to case, with the aliases LAION, DataComp and img2dataset use, or named outright
(``input.key_column``, ``input.image_column``, ``input.caption_column``).

Every other scalar column passes through to the audit and the curated parquet. A column
whose name the audit already uses (``status``, ``width``...) is carried as ``i2d_<name>``
for img2dataset's own metadata and ``input_<name>`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pairsift.models.records import AUDIT_COLUMNS

KEY_ALIASES = ("key", "uid", "sample_id", "id")
CAPTION_ALIASES = ("caption", "text", "txt", "title", "alt", "alt_text")
PATH_ALIASES = ("path", "image_path", "file", "filepath", "filename")
URL_ALIASES = ("url", "image_url", "link")
BYTES_ALIASES = ("jpg", "jpeg", "png", "webp", "image", "image_bytes")
# img2dataset's columns that pairsift reads itself rather than passing through
I2D_STATUS, I2D_ERROR = "status", "error_message"
RESERVED = frozenset({*AUDIT_COLUMNS, "index", "label", "input_key"})


class TableColumnsError(ValueError):
    """A table in which no column can be the image or the caption."""


@dataclass(frozen=True)
class ColumnChoice:
    """Columns the user named; None: find one by its aliases."""

    key: str | None = None
    image: str | None = None
    caption: str | None = None


@dataclass(frozen=True)
class TableColumns:
    """The columns one table's rows are read by (real names, as the table spells them)."""

    key: str | None
    caption: str | None
    path: str | None  # a file under the table's folder, or a URL when the column holds one
    url: str | None
    image_bytes: str | None  # img2dataset's parquet output: the image itself in a column
    translations: dict[str, str] = field(default_factory=dict)  # lang -> caption_<lang> column
    passthrough: dict[str, str] = field(default_factory=dict)  # table column -> audit column
    img2dataset: bool = False  # img2dataset's metadata: status/error_message say what failed
    original_sha256: str | None = None  # img2dataset's hash of the bytes it downloaded

    @property
    def both_path_and_url(self) -> bool:
        return self.path is not None and self.url is not None


def _find(lower: dict[str, str], aliases: tuple[str, ...]) -> str | None:
    return next((lower[a] for a in aliases if a in lower), None)


def find_column(names: list[str], aliases: tuple[str, ...]) -> str | None:
    """The first of ``aliases`` among ``names``, in any case (the first spelling wins)."""
    return _find({n.lower(): n for n in reversed(names)}, aliases)


def _named(names: list[str], wanted: str, role: str) -> str:
    match = next((n for n in names if n == wanted), None) or next(
        (n for n in names if n.lower() == wanted.lower()), None)
    if match is None:
        raise TableColumnsError(f"no column {wanted!r} for the {role} (input.{role}_column); "
                                f"the table has {names}")
    return match


def resolve_columns(names: list[str], choice: ColumnChoice = ColumnChoice()) -> TableColumns:
    """Why one piece: the lookups run in precedence order (named column, then aliases), and
    the pass-through set is what is left, so they read best together."""
    lower = {n.lower(): n for n in reversed(names)}  # the first spelling wins a case clash
    key = _named(names, choice.key, "key") if choice.key else _find(lower, KEY_ALIASES)
    caption = (_named(names, choice.caption, "caption") if choice.caption
               else _find(lower, CAPTION_ALIASES))
    path = url = image_bytes = None
    if choice.image:
        path = _named(names, choice.image, "image")
    else:
        path, url = _find(lower, PATH_ALIASES), _find(lower, URL_ALIASES)
        image_bytes = _find(lower, BYTES_ALIASES)
    if path is None and url is None and image_bytes is None:
        raise TableColumnsError(
            f"no image column: looked for {list(PATH_ALIASES + URL_ALIASES + BYTES_ALIASES)} "
            f"in any case; the table has {names}; name one with --image-column")
    if caption is None:
        raise TableColumnsError(
            f"no caption column: looked for {list(CAPTION_ALIASES)} in any case; the table "
            f"has {names}; name one with --caption-column")
    img2dataset = I2D_STATUS in lower and I2D_ERROR in lower
    used = {key, caption, path, url, image_bytes}
    translations = {n[len("caption_"):]: n for n in names
                    if n.lower().startswith("caption_") and n not in used}
    original_sha256 = lower.get("sha256") if img2dataset else None
    used.add(original_sha256)
    passthrough = {}
    for name in names:
        if name in used or name in translations.values():
            continue
        target = name.lower()
        if target in RESERVED:
            target = f"{'i2d' if img2dataset else 'input'}_{target}"
        passthrough[name] = target
    if url is not None:
        passthrough.setdefault(url, "url")  # the row's URL stays in the audit
    return TableColumns(key, caption, path, url, image_bytes, translations, passthrough,
                        img2dataset, original_sha256)
