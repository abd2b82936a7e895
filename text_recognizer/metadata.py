"""The character sets and image sizes every part of the project agrees on.

Defined once here (as the FSDL labs do) so that the data files, the networks and the
decoders cannot drift apart. The mapping is also written into each HDF5 file, and
readers check it against this module.
"""

from __future__ import annotations

import string
import typing
from typing import Literal

GLYPH_SIZE = 28  # EMNIST glyphs are 28x28 pixels, white ink on black

# EMNIST ByClass label order: digits, upper case, lower case (62 classes).
EMNIST_CLASSES: tuple[str, ...] = tuple(string.digits + string.ascii_uppercase + string.ascii_lowercase)
NUM_EMNIST_CLASSES = len(EMNIST_CLASSES)

# Line tokens: the CTC blank first (index 0, torch's default), then the padding token that
# fills label rows past the end of the text, then the 62 glyph classes and the space.
BLANK_TOKEN = "<blank>"
PAD_TOKEN = "<pad>"
LINE_TOKENS: tuple[str, ...] = (BLANK_TOKEN, PAD_TOKEN, *EMNIST_CLASSES, " ")
BLANK_INDEX = 0
PAD_INDEX = 1
SPACE_INDEX = LINE_TOKENS.index(" ")
FIRST_CLASS_INDEX = PAD_INDEX + 1  # LINE_TOKENS index of EMNIST class 0; class c is at c + this
LINE_CHARSET = frozenset(EMNIST_CLASSES) | {" "}
CHAR_TO_LINE_INDEX = {token: i for i, token in enumerate(LINE_TOKENS) if len(token) == 1}


def emnist_class_to_line_index(emnist_label: int) -> int:
    """Index in LINE_TOKENS of an EMNIST class label (0..61)."""
    return emnist_label + FIRST_CLASS_INDEX


def line_width(max_length: int) -> int:
    """Width of every EMNISTLines image: room for max_length glyphs with no overlap."""
    return max_length * GLYPH_SIZE


# EMNIST's six splits, all in NIST's gzip.zip (Cohen et al. 2017, "EMNIST: an extension of MNIST to handwritten
# letters"). ByClass keeps both cases of every letter; ByMerge and Balanced merge the 15 letters whose two cases look
# alike into the upper-case class; Letters merges every letter's cases; Digits and MNIST hold the digits only.
EmnistSplit = Literal["byclass", "bymerge", "balanced", "letters", "digits", "mnist"]
EMNIST_SPLITS: tuple[str, ...] = typing.get_args(EmnistSplit)
LINES_SPLIT = "byclass"  # EMNISTLines writes case, so its glyphs are ByClass's whatever the char model reads
MERGED_LETTERS = "cijklmopsuvwxyz"  # ByMerge and Balanced: each lower-case letter here joins its upper-case class
_MERGED = tuple(string.digits + string.ascii_uppercase) + tuple(
    c for c in string.ascii_lowercase if c not in MERGED_LETTERS
)
# Each split's classes in label order, as its `emnist-<split>-mapping.txt` names them (the first code of a line):
# a merged class is named by its upper-case letter and stands for both cases.
SPLIT_CLASSES: dict[str, tuple[str, ...]] = {
    "byclass": EMNIST_CLASSES,
    "bymerge": _MERGED,
    "balanced": _MERGED,
    "letters": tuple(string.ascii_uppercase),
    "digits": tuple(string.digits),
    "mnist": tuple(string.digits),
}
# What a split's label files count from: Letters labels its 26 classes 1..26; emnist_hdf5 stores 0..25.
SPLIT_LABEL_OFFSET: dict[str, int] = {"letters": 1}


def split_members(split: str) -> tuple[str, str, str, str]:
    """The archive members of one split: train images, train labels, test images, test labels."""
    base = f"gzip/emnist-{split}"
    return (
        f"{base}-train-images-idx3-ubyte.gz",
        f"{base}-train-labels-idx1-ubyte.gz",
        f"{base}-test-images-idx3-ubyte.gz",
        f"{base}-test-labels-idx1-ubyte.gz",
    )


def split_mapping_member(split: str) -> str:
    """The archive member that names a split's classes: one line per label, `label code [code]`."""
    return f"gzip/emnist-{split}-mapping.txt"


def byclass_to_split(split: str) -> tuple[int | None, ...]:
    """For each ByClass label, its label in `split`'s files (offset included), None where the split has no such
    class: how EMNIST derived every split from the ByClass glyphs (a merged lower-case letter joins its upper case)."""
    classes, offset = SPLIT_CLASSES[split], SPLIT_LABEL_OFFSET.get(split, 0)
    out: list[int | None] = []
    for char in EMNIST_CLASSES:
        name = char if char in classes else char.upper() if char.islower() and char.upper() in classes else None
        out.append(None if name is None else classes.index(name) + offset)
    return tuple(out)


def official_mapping_text(split: str) -> str:
    """The text of `emnist-<split>-mapping.txt` as NIST writes it: `label code`, or `label upper lower` for Letters."""
    offset = SPLIT_LABEL_OFFSET.get(split, 0)
    lines = []
    for label, name in enumerate(SPLIT_CLASSES[split]):
        codes = [ord(name), ord(name.lower())] if split == "letters" else [ord(name)]
        lines.append(" ".join(str(v) for v in (label + offset, *codes)))
    return "\n".join(lines) + "\n"


# Official EMNIST ByClass members of https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip
EMNIST_MEMBERS: tuple[str, ...] = split_members("byclass")
# Every member of gzip.zip, in the archive's (alphabetical) order: each split's mapping and four IDX files.
ALL_EMNIST_MEMBERS: tuple[str, ...] = tuple(
    sorted(m for split in EMNIST_SPLITS for m in (split_mapping_member(split), *split_members(split)))
)
