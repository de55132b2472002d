"""Compositional captions for synthetic scenes, in English and four target languages.

Each language is a tiny grammar (number and gender agreement, word order) over the scene's
groups, so the translations are exact: translation-noise benchmarks get a clean reference
for every pair. Languages: en, de, es, fr, pt.
"""

from __future__ import annotations

from dataclasses import dataclass

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "green": (34, 150, 44),
    "blue": (31, 80, 220),
    "yellow": (240, 200, 20),
    "orange": (255, 127, 14),
    "purple": (128, 50, 170),
    "pink": (245, 130, 200),
    "black": (25, 25, 25),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star")
COUNTS: tuple[int, ...] = (1, 2, 3)
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom")
LANGS: tuple[str, ...] = ("de", "es", "fr", "pt")


@dataclass(frozen=True)
class Group:
    """``count`` objects of one colour and shape, in one region (None: the whole image)."""

    count: int
    colour: str
    shape: str
    position: str | None


_EN_COUNT = {2: "two", 3: "three"}
_EN_POSITION = {"left": "on the left", "right": "on the right", "top": "at the top",
                "bottom": "at the bottom"}

# (singular, plural, gender) per shape
_NOUNS: dict[str, dict[str, tuple[str, str, str]]] = {
    "de": {"circle": ("Kreis", "Kreise", "m"), "square": ("Quadrat", "Quadrate", "n"),
           "triangle": ("Dreieck", "Dreiecke", "n"), "diamond": ("Raute", "Rauten", "f"),
           "star": ("Stern", "Sterne", "m")},
    "es": {"circle": ("círculo", "círculos", "m"), "square": ("cuadrado", "cuadrados", "m"),
           "triangle": ("triángulo", "triángulos", "m"), "diamond": ("rombo", "rombos", "m"),
           "star": ("estrella", "estrellas", "f")},
    "fr": {"circle": ("cercle", "cercles", "m"), "square": ("carré", "carrés", "m"),
           "triangle": ("triangle", "triangles", "m"), "diamond": ("losange", "losanges", "m"),
           "star": ("étoile", "étoiles", "f")},
    "pt": {"circle": ("círculo", "círculos", "m"), "square": ("quadrado", "quadrados", "m"),
           "triangle": ("triângulo", "triângulos", "m"), "diamond": ("losango", "losangos", "m"),
           "star": ("estrela", "estrelas", "f")},
}
# Romance colours: (masc sg, fem sg, masc pl, fem pl); German: stem or invariable word
_ROMANCE_COLOURS: dict[str, dict[str, tuple[str, str, str, str]]] = {
    "es": {"red": ("rojo", "roja", "rojos", "rojas"), "green": ("verde", "verde", "verdes", "verdes"),
           "blue": ("azul", "azul", "azules", "azules"),
           "yellow": ("amarillo", "amarilla", "amarillos", "amarillas"),
           "orange": ("naranja", "naranja", "naranjas", "naranjas"),
           "purple": ("morado", "morada", "morados", "moradas"),
           "pink": ("rosa", "rosa", "rosas", "rosas"), "black": ("negro", "negra", "negros", "negras")},
    "fr": {"red": ("rouge", "rouge", "rouges", "rouges"), "green": ("vert", "verte", "verts", "vertes"),
           "blue": ("bleu", "bleue", "bleus", "bleues"), "yellow": ("jaune", "jaune", "jaunes", "jaunes"),
           "orange": ("orange", "orange", "orange", "orange"),
           "purple": ("violet", "violette", "violets", "violettes"),
           "pink": ("rose", "rose", "roses", "roses"), "black": ("noir", "noire", "noirs", "noires")},
    "pt": {"red": ("vermelho", "vermelha", "vermelhos", "vermelhas"),
           "green": ("verde", "verde", "verdes", "verdes"), "blue": ("azul", "azul", "azuis", "azuis"),
           "yellow": ("amarelo", "amarela", "amarelos", "amarelas"),
           "orange": ("laranja", "laranja", "laranja", "laranja"),
           "purple": ("roxo", "roxa", "roxos", "roxas"), "pink": ("rosa", "rosa", "rosa", "rosa"),
           "black": ("preto", "preta", "pretos", "pretas")},
}
_DE_COLOURS: dict[str, tuple[str, bool]] = {  # (stem, declines)
    "red": ("rot", True), "green": ("grün", True), "blue": ("blau", True), "yellow": ("gelb", True),
    "orange": ("orangefarben", True), "purple": ("lila", False), "pink": ("rosa", False),
    "black": ("schwarz", True),
}
_ONE = {"de": {"m": "ein", "n": "ein", "f": "eine"}, "es": {"m": "un", "f": "una"},
        "fr": {"m": "un", "f": "une"}, "pt": {"m": "um", "f": "uma"}}
_MANY = {"de": {2: "zwei", 3: "drei"}, "es": {2: "dos", 3: "tres"}, "fr": {2: "deux", 3: "trois"},
         "pt": {2: "dois", 3: "três"}}
_PT_TWO_FEM = "duas"
_POSITION = {
    "de": {"left": "links", "right": "rechts", "top": "oben", "bottom": "unten"},
    "es": {"left": "a la izquierda", "right": "a la derecha", "top": "arriba", "bottom": "abajo"},
    "fr": {"left": "à gauche", "right": "à droite", "top": "en haut", "bottom": "en bas"},
    "pt": {"left": "à esquerda", "right": "à direita", "top": "em cima", "bottom": "embaixo"},
}
_AND = {"en": "and", "de": "und", "es": "y", "fr": "et", "pt": "e"}


def _english(group: Group) -> str:
    noun = group.shape if group.count == 1 else group.shape + "s"
    if group.count == 1:
        article = "an" if group.colour[0] in "aeiou" else "a"
        phrase = f"{article} {group.colour} {noun}"
    else:
        phrase = f"{_EN_COUNT[group.count]} {group.colour} {noun}"
    return phrase if group.position is None else f"{phrase} {_EN_POSITION[group.position]}"


def _german(group: Group) -> str:
    singular, plural, gender = _NOUNS["de"][group.shape]
    stem, declines = _DE_COLOURS[group.colour]
    if group.count == 1:
        ending = {"m": "er", "f": "e", "n": "es"}[gender] if declines else ""
        phrase = f"{_ONE['de'][gender]} {stem}{ending} {singular}"
    else:
        phrase = f"{_MANY['de'][group.count]} {stem}{'e' if declines else ''} {plural}"
    return phrase if group.position is None else f"{phrase} {_POSITION['de'][group.position]}"


def _romance(lang: str, group: Group) -> str:
    singular, plural, gender = _NOUNS[lang][group.shape]
    forms = _ROMANCE_COLOURS[lang][group.colour]
    feminine = gender == "f"
    if group.count == 1:
        number = _ONE[lang][gender]
        phrase = f"{number} {singular} {forms[1] if feminine else forms[0]}"
    else:
        number = _MANY[lang][group.count]
        if lang == "pt" and group.count == 2 and feminine:
            number = _PT_TWO_FEM
        phrase = f"{number} {plural} {forms[3] if feminine else forms[2]}"
    return phrase if group.position is None else f"{phrase} {_POSITION[lang][group.position]}"


def describe(groups: tuple[Group, ...], lang: str = "en") -> str:
    """The caption of a scene whose groups are mentioned in the given order."""
    if lang == "en":
        parts = [_english(g) for g in groups]
    elif lang == "de":
        parts = [_german(g) for g in groups]
    elif lang in _ROMANCE_COLOURS:
        parts = [_romance(lang, g) for g in groups]
    else:
        raise ValueError(f"synthetic captions exist for en and {', '.join(LANGS)}, not {lang!r}")
    return f" {_AND[lang]} ".join(parts)
