"""report.html's markup: a summary first, then plots, galleries and files, each section with
a paragraph saying how to read it. Self-contained: styles and pictures are inline, nothing is
fetched, and the page runs no script."""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pairsift.pipeline.report.thumbnails import PairId

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1180px;color:#222;padding:0 1em}
h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
.lead{color:#555}.how{color:#444;max-width:62em}
table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #e4e4e4;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.warn{background:#fff3cd;border:1px solid #e0c36a;padding:.6em 1em;margin:.6em 0}
.summary{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}
nav ul{display:flex;flex-wrap:wrap;gap:.3em 1.4em;list-style:none;padding:0}
figure.pair{width:206px;margin:0;border:1px solid #ddd;border-radius:4px;padding:6px;font-size:12px}
figure.pair img,.noimg{display:block;width:112px;height:112px;object-fit:contain;background:#f4f4f4}
.noimg{font-size:11px;color:#888;text-align:center;line-height:112px}
.pair .cap{font-weight:600;margin:.3em 0;overflow-wrap:anywhere}
.pair .tr{margin:.2em 0;color:#333;overflow-wrap:anywhere}
.pair .reason{color:#444;overflow-wrap:anywhere}.pair .key{color:#888;overflow-wrap:anywhere}
.lab{font-weight:700;padding:0 4px;border-radius:3px;color:#fff}
.lab-clean{background:#2e8540}.lab-hard{background:#d98b00}.lab-noisy{background:#c0392b}
.lab-none{background:#777}
svg{max-width:100%;height:auto}
"""


@dataclass
class Section:
    """One part of the page: a title, how to read it, and its body (markup)."""

    title: str
    how: str
    body: str
    anchor: str = ""


@dataclass
class Page:
    title: str
    lead: str
    sections: list[Section] = field(default_factory=list)

    def render(self) -> str:
        toc = "".join(f'<li><a href="#{s.anchor}">{esc(s.title)}</a></li>'
                      for s in self.sections if s.anchor)
        parts = [f"<h1>{esc(self.title)}</h1>", f'<p class="lead">{self.lead}</p>',
                 f"<nav><ul>{toc}</ul></nav>"]
        for s in self.sections:
            anchor = f' id="{esc(s.anchor)}"' if s.anchor else ""
            parts.append(f"<section{anchor}><h2>{esc(s.title)}</h2>"
                         f'<p class="how">{s.how}</p>{s.body}</section>')
        return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
                f"<title>{esc(self.title)}</title><style>{STYLE}</style></head>"
                f"<body>{''.join(parts)}</body></html>\n")


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def number(value: Any, digits: int = 3) -> str:
    """A value as a reader wants it: integers with separators, floats to ``digits``."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if value == value else "–"
    return str(value)


def precise(value: Any) -> str:
    """A score on a card: 6 significant digits, as the audit stores it, so it never reads as
    equal to a cut its reason says it is below."""
    return f"{value:.6g}" if isinstance(value, float) else number(value)


def table(rows: Iterable[tuple[Any, ...]], header: tuple[str, ...] | None = None) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header) if header else ""
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{esc(number(v))}</td>' if isinstance(v, int | float)
                         and not isinstance(v, bool) else f"<td>{esc(number(v))}</td>" for v in row)
        + "</tr>" for row in rows)
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


def label_badge(label: str | None) -> str:
    name = label or "none"
    return f'<span class="lab lab-{esc(name)}">{esc(label or "no label")}</span>'


def pair_card(row: dict[str, Any], thumbs: dict[PairId, str], lang: str | None = None) -> str:
    """One pair: thumbnail, caption (and, for a language gallery, the translation), label,
    p_clean, uncertainty, reason and where it came from."""
    pair = (str(row.get("source_shard")), str(row.get("key")))
    uri = thumbs.get(pair)
    picture = (f'<img src="{uri}" alt="{esc(pair[1])}">' if uri
               else '<div class="noimg">no thumbnail</div>')
    caption = f'<p class="cap">{esc(row.get("caption") or "")}</p>'
    if lang is not None:
        label, p_clean, reason = (row.get(f"label_{lang}"), row.get(f"p_clean_{lang}"),
                                  row.get(f"reason_{lang}"))
        caption += f'<p class="tr">{esc(lang)}: {esc(row.get(f"caption_{lang}") or "")}</p>'
        p_name = f"p_clean_{lang}"
    else:
        label, p_clean, reason, p_name = row.get("label"), row.get("p_clean"), row.get("reason"), "p_clean"
    truth = ""
    if row.get("is_noisy") is not None:
        truth = f" · truth {'noisy' if row['is_noisy'] else 'clean'}"
    meta = (f'<p class="meta">{label_badge(label)} {esc(p_name)} {esc(precise(p_clean))} · '
            f'u {esc(precise(row.get("uncertainty")))}{esc(truth)}</p>')
    return (f'<figure class="pair" data-key="{esc(pair[1])}" data-label="{esc(label or "")}">'
            f"{picture}<figcaption>{caption}{meta}"
            f'<p class="reason">{esc(reason or row.get("error") or "")}</p>'
            f'<p class="key">{esc(pair[0])} / {esc(pair[1])}</p></figcaption></figure>')


def gallery(rows: list[dict[str, Any]], thumbs: dict[PairId, str], lang: str | None = None) -> str:
    if not rows:
        return "<p><em>No pair falls in this gallery.</em></p>"
    cards = "".join(pair_card(row, thumbs, lang) for row in rows)
    return f'<div class="cards gallery">{cards}</div>'


def status_table(rows: list[dict[str, Any]]) -> str:
    return table(((r.get("source_shard"), r.get("key"), r.get("error") or "") for r in rows),
                 ("shard", "key", "error"))
