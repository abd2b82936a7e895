"""The character sets and image sizes every part of the project agrees on.

Defined once here (as the FSDL labs do) so that the data files, the networks and the
decoders cannot drift apart. The mapping is also written into each HDF5 file, and
readers check it against this module.
"""

from __future__ import annotations

import string

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


# Official EMNIST ByClass members of https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip
EMNIST_MEMBERS: tuple[str, ...] = (
    "gzip/emnist-byclass-train-images-idx3-ubyte.gz",
    "gzip/emnist-byclass-train-labels-idx1-ubyte.gz",
    "gzip/emnist-byclass-test-images-idx3-ubyte.gz",
    "gzip/emnist-byclass-test-labels-idx1-ubyte.gz",
)
