"""Lines of text set in system fonts that no pipeline code draws with, for tests and benchmarks/read_fonts.py.

The offline data source renders glyphs with matplotlib's bundled fonts (DejaVu, STIX, Computer
Modern), so a model trained on it has never seen these faces: Liberation (metric clones of
Arial, Times and Courier, Debian package fonts-liberation). One copy of the phrase set and of
the renderer, so the test and the benchmark measure the same thing.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_PACKAGE = "fonts-liberation"
FONT_DIRS = (Path("/usr/share/fonts/truetype/liberation"), Path("/usr/share/fonts/truetype/liberation2"))
FONT_NAMES = ("LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf", "LiberationSerif-Regular.ttf")

# Ordinary English, mostly lower case as running text is. EMNIST fits every character into the
# same box, so c/C, o/O, s/S, ... look alike once normalised; the readings are compared as written.
PHRASES: tuple[str, ...] = (
    "hello world 42",
    "the quick brown fox",
    "read what a person writes",
    "a line of handwriting",
    "there is no place like home",
    "time and tide wait for no man",
    "she sells sea shells",
    "an apple a day",
    "all good things must end",
    "one small step for man",
    "better late than never",
    "knowledge is power",
    "to be or not to be",
    "actions speak louder than words",
    "every cloud has a silver lining",
    "practice makes perfect",
    "the early bird",
    "fortune favours the bold",
    "where there is a will",
    "Paris in the spring",
    "The river was cold",
    "open the door 1960",
    "my friend and her dog",
    "look before you leap",
)
# The normaliser is tuned and its model-free tests are written on TUNING_PHRASES; the reading test scores
# HELD_OUT_PHRASES only, which no tuning looked at (every other phrase, so both halves have digits and capitals).
TUNING_PHRASES: tuple[str, ...] = PHRASES[::2]
HELD_OUT_PHRASES: tuple[str, ...] = PHRASES[1::2]


@dataclasses.dataclass(frozen=True)
class Style:
    """How a line is set: font file name, pixel size, margin, polarity, extra stroke, JPEG quality."""

    font: str = FONT_NAMES[0]
    size: int = 40
    margin: int = 10
    dark_on_light: bool = True
    stroke: int = 0
    jpeg_quality: int | None = None

    def __str__(self) -> str:
        ink = "dark-on-light" if self.dark_on_light else "light-on-dark"
        jpeg = f" jpeg{self.jpeg_quality}" if self.jpeg_quality else ""
        return f"{Path(self.font).stem} {self.size}px m{self.margin} {ink} s{self.stroke}{jpeg}"


# The styles each phrase is read in: sizes 14..80 px, margins, both polarities, strokes, JPEG noise.
STYLES: tuple[Style, ...] = (
    Style(FONT_NAMES[0], 14, 2),
    Style(FONT_NAMES[0], 20, 10, dark_on_light=False),
    Style(FONT_NAMES[0], 40, 40, jpeg_quality=40),
    Style(FONT_NAMES[0], 80, 5, stroke=2),
    Style(FONT_NAMES[1], 20, 6, jpeg_quality=60),
    Style(FONT_NAMES[1], 40, 20, dark_on_light=False),
    Style(FONT_NAMES[2], 24, 8),
    Style(FONT_NAMES[2], 40, 15, stroke=1, dark_on_light=False, jpeg_quality=50),
)


def find_font(name: str) -> Path | None:
    """The path of a font file of FONT_PACKAGE, or None when the package is not installed."""
    for folder in FONT_DIRS:
        if (folder / name).is_file():
            return folder / name
    return None


def render_line(text: str, style: Style = Style()) -> np.ndarray:
    """(H, W) uint8 grayscale of `text` set in `style`: one line, no ligatures, the margin on every side."""
    path = find_font(style.font)
    if path is None:
        raise FileNotFoundError(f"font {style.font} not found (apt-get install {FONT_PACKAGE})")
    font = ImageFont.truetype(str(path), style.size, layout_engine=ImageFont.Layout.BASIC)
    left, top, right, bottom = font.getbbox(text, stroke_width=style.stroke)
    paper, ink = (245, 20) if style.dark_on_light else (15, 235)
    size = (right - left + 2 * style.margin, bottom - top + 2 * style.margin)
    img = Image.new("L", size, paper)
    origin = (style.margin - left, style.margin - top)
    ImageDraw.Draw(img).text(origin, text, fill=ink, font=font, stroke_width=style.stroke, stroke_fill=ink)
    if style.jpeg_quality:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=style.jpeg_quality)
        img = Image.open(io.BytesIO(buf.getvalue()))
    return np.asarray(img.convert("L"))
