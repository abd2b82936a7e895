"""Read the text of an image with a saved checkpoint: the code behind `text-recognizer predict` and the web page.

A photo, a scan or a drawing looks nothing like the training data, so it is first brought to
the EMNIST look: grayscale, the ink found by a local threshold and a leaning line stood upright
(text_recognizer/reading/paper.py), white ink on black, and each glyph fitted into its own 28x28
cell as EMNIST glyphs are (text_recognizer/reading/normalize.py says how and why). `layout="line"` keeps
the older whole-line scaling (height 28, ink about 20 rows) for input that already looks like
EMNISTLines.

Bad input is refused with a PredictError of one line: a path that is missing, a directory, a
FIFO or device, unreadable or empty; an image with more pixels than `max_pixels` (checked from
the header, before anything is decoded); a file that does not decode (not an image, truncated,
corrupt); a blank image; several lines of text given to a one-line layout (`glyphs`, `line`); and a
single glyph given to the line model or a line given to the character model.

`read_image` reads an image as a page when asked (`layout="page"`) or when it holds several lines
(`layout="auto"`): page.py cuts it into lines, and every line's model input is read in the same batches
(read_model_inputs) as other images' inputs.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import stat
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from text_recognizer.errors import InputError
from text_recognizer.lit_models.ctc import indices_to_text
from text_recognizer.metadata import GLYPH_SIZE
from text_recognizer.models.checkpoint import CheckpointError, Kind, LoadedModel, load_checkpoint
from text_recognizer.reading import cutting, normalize, paper
from text_recognizer.reading.evaluation import (
    LineDecoder,
    default_device,
    line_confidences,
    line_logits,
    reading_decoder,
    to_model_input,
)
from text_recognizer.reading.normalize import GLYPH_BOX, BlankImageError
from text_recognizer.reading.page import Box, PageLayout, prepare_lines

if TYPE_CHECKING:
    from text_recognizer.reading.onnx_model import OnnxModel

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "GLYPH_BOX",
    "IMAGE_LAYOUTS",
    "LAYOUTS",
    "LoadedModel",
    "PageReading",
    "PredictError",
    "Reading",
    "SeveralLinesError",
    "candidate_inputs",
    "check_layout",
    "load_image",
    "load_model",
    "most_confident",
    "predict_file",
    "preprocess_char",
    "preprocess_line",
    "read_array",
    "read_files",
    "read_image",
    "read_model_inputs",
    "shown_path",
]

DEFAULT_MAX_PIXELS = 40_000_000  # 40 megapixels: any phone photo, far below a decompression bomb
LAYOUTS = ("glyphs", "line")  # how one line is brought to the model
IMAGE_LAYOUTS = ("auto", "page", *LAYOUTS)  # read_image's: a page cut into lines, or one line as LAYOUTS say
TOP_CLASSES = 5
LINE_ASPECT = 2.0  # a single glyph group wider than this many heights is joined-up writing, not one character
CHAR_LINE_ASPECT = 1.5  # several glyphs in a box at least this wide are a line, not one character
NOT_ONE_CHARACTER = -20.0  # the line model's score for a piece it reads as none or several characters (cutting.py)
BATCH_SIZE = 32  # model inputs read at once by read_model_inputs (lines of similar width: little padding)
CHUNK = 8 * BATCH_SIZE  # files read_files prepares before reading them: bounds the memory, keeps output flowing
_PIL_LIMIT_LOCK = threading.Lock()

# Some of Pillow's parsers log a damaged file's fault (logger.error) before raising; with no
# handler configured Python's last-resort handler prints that on stderr, a second line beside
# the one-line PredictError. A NullHandler stops that and still lets the records propagate to
# whatever handlers an application configures.
logging.getLogger("PIL").addHandler(logging.NullHandler())


class PredictError(RuntimeError):
    """The image or the checkpoint cannot be used for prediction."""


class SeveralLinesError(PredictError):
    """Several lines of text given to a one-line layout: its own type so that `auto` reads the image as a page."""

    def __init__(self, lines: int) -> None:
        super().__init__(
            f"found {lines} lines of text; predict reads one line: crop the image to one line "
            "(or read it as a page: --layout page)"
        )
        self.lines = lines


@dataclasses.dataclass
class Reading:
    """What a model read in an image, with the image it actually saw (to show why a reading went wrong)."""

    text: str
    model_input: np.ndarray  # (28, W) uint8, white on black
    top_classes: list[tuple[str, float]]  # char checkpoints: the 5 likeliest classes and their probabilities
    kind: str
    steps: paper.Ink | None = None  # how the ink was found and stood upright (`--show-input` draws it)
    char_confidences: list[float] = dataclasses.field(default_factory=list)  # one per character of `text`
    confidence: float | None = None  # the line's (reading/confidence.py); a glyph's softmax probability


@dataclasses.dataclass
class PageReading:
    """An image read as a page (page.py): each line's box (input pixels) and reading, top to bottom."""

    lines: list[tuple[Box, Reading]]
    layout: PageLayout | None = None  # how the lines were found: read_image keeps it (--show-input), read_files not

    @property
    def text(self) -> str:
        """The lines' texts, one per row (a page's text in every output)."""
        return "\n".join(reading.text for _, reading in self.lines)

    @property
    def confidence(self) -> float | None:
        """The least confident line's: a page is as trustworthy as its weakest line, and this falls below a line
        threshold exactly when some line does."""
        values = [r.confidence for _, r in self.lines if r.confidence is not None]
        return min(values) if values else None


# --- images ------------------------------------------------------------------------------------


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path as a message shows it: control characters (a newline in a name) escaped, so the message is one line."""
    text = str(path)
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line, or its type's name when it has none (an IndexError from a parser)."""
    text = " ".join(str(exc).split())
    return text if text else type(exc).__name__


def _open_checked(file: BinaryIO, name: str, max_pixels: int) -> Image.Image:
    """Open an image lazily (header only) and refuse it when it has more than `max_pixels` pixels.

    Pillow's own decompression-bomb guard (a warning above 89 MP, an error above 179 MP) is
    replaced by this limit, so the user sees one message with the knob to turn, never Pillow's.
    Past Pillow's error the header is read again with its guard lifted for that call (under a
    lock: the limit is a module global), and the size check here decides.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(file)
        except Image.DecompressionBombError:
            file.seek(0)
            with _PIL_LIMIT_LOCK:  # read the header with Pillow's guard lifted; the size check below decides
                saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
                try:
                    img = Image.open(file)
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise PredictError(
            f"{name} is {width}x{height} = {width * height:,} pixels, above the limit of {max_pixels:,} "
            f"(raise it with --max-pixels if the file is trusted)"
        )
    if width < 1 or height < 1:
        img.close()
        raise PredictError(f"{name} is {width}x{height}: an image without pixels")
    return img


def _to_gray(img: Image.Image) -> np.ndarray:
    """(H, W) uint8 of any Pillow mode, the full range kept.

    16- and 32-bit gray is scaled to 8 bits (convert("L") would clip everything above 255 to
    white, losing light ink), a palette goes through its colours, transparency counts as paper.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)  # numpy reads each byte order; Pillow's I;16N -> I clips at 255
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)  # a float TIFF may hold NaN or infinities
        top = 255.0 if a.max(initial=0) <= 255 else 65535.0 if a.max() <= 65535 else float(a.max())
        if img.mode == "F" and a.max(initial=0) <= 1.0:
            top = 1.0
        return np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(paper, rgba)
    if img.mode in ("LAB", "HSV"):  # Pillow converts these to L only by way of RGB
        img = img.convert("RGB")
    return np.array(img.convert("L"), dtype=np.uint8)


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):  # fmt: skip
        if test(mode):
            return kind
    return "a special file"


def load_image(image_path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """(H, W) uint8 grayscale of an image file, upright (EXIF orientation applied), of at most `max_pixels`.

    Whatever the path holds, the answer is the image or a one-line PredictError: not found (a
    dangling symbolic link too), a directory, not a regular file (a FIFO is never opened: reading
    one would wait for a writer), not readable, empty, too many pixels, or not a readable image.
    A symbolic link to an image reads the image.
    """
    path = Path(image_path)
    name = shown_path(path)
    try:
        info = path.stat()  # follows symbolic links: a link is what it points to
    except (FileNotFoundError, NotADirectoryError):
        if path.is_symlink():
            raise PredictError(f"image {name} not found: it is a symbolic link to a missing file") from None
        raise PredictError(f"image {name} not found") from None
    except PermissionError:
        raise PredictError(f"cannot read {name}: permission denied (on a folder on its path)") from None
    except OSError as exc:  # a loop of symbolic links, a name too long
        raise PredictError(f"cannot read {name}: {exc.strerror or _one_line(exc)}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise PredictError(f"{name} is a directory, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise PredictError(f"{name} is {_file_kind(info.st_mode)}, not an image file")
    if info.st_size == 0:
        raise PredictError(f"{name} is empty (0 bytes)")
    try:
        file = open(path, "rb")  # noqa: SIM115 - closed by the with below; Pillow gets the open file
    except PermissionError:
        raise PredictError(f"cannot read {name}: permission denied") from None
    except OSError as exc:  # gone since the stat, or an I/O error
        raise PredictError(f"cannot read {name}: {exc.strerror or _one_line(exc)}") from exc
    with file:
        return _decode(file, name, max_pixels)


def _decode(file: BinaryIO, name: str, max_pixels: int) -> np.ndarray:
    """The grayscale pixels of an open image file, or a one-line PredictError.

    Every exception but PredictError is caught here, deliberately. A damaged file surfaces as
    whatever the format plugin's parser trips over: OSError and SyntaxError by Pillow's
    convention, but also ValueError, TypeError (tests/test_fuzz_inputs.py met one from a TIFF tag
    of the wrong type), and in principle struct.error, IndexError, EOFError, MemoryError and more:
    Pillow's own fuzzing harness (Tests/oss-fuzz/fuzz_pillow.py) catches Exception for this reason.
    A list of types would turn the next unlisted one into a traceback for a bad file. The block
    holds only decoding (open, load, EXIF transpose, mode conversion), the message falls back to
    the exception's type when it has no text, and the cause is chained for debugging. Pillow's
    warnings about damaged files ("Possibly corrupt EXIF data") are silenced: the error says it.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with _open_checked(file, name, max_pixels) as img:
                img.load()
                return _to_gray(ImageOps.exif_transpose(img))
    except PredictError:
        raise
    except UnidentifiedImageError as exc:  # its text repeats the path, as the repr of the open file
        raise PredictError(f"{name} is not a readable image (PNG, JPEG, ...): no image format recognised") from exc
    except MemoryError as exc:
        raise PredictError(f"cannot decode {name}: not enough memory") from exc
    except Exception as exc:  # see the docstring: decoding a damaged file can raise almost any type
        raise PredictError(f"{name} is not a readable image (PNG, JPEG, ...): {_one_line(exc)}") from exc


# --- normalisation -------------------------------------------------------------------------------


def _white_on_black(gray: np.ndarray) -> np.ndarray:
    try:
        return normalize.white_on_black(gray)
    except BlankImageError as exc:
        raise PredictError(str(exc)) from exc


def preprocess_char(gray: np.ndarray) -> np.ndarray:
    """(H, W) uint8 of any polarity -> (28, 28) uint8: the ink (paper.py) fitted into 20x20 and centred, as EMNIST."""
    try:
        return normalize.fit_glyph(paper.read_ink(gray, deslant=False).ink)
    except BlankImageError as exc:
        raise PredictError(str(exc)) from exc


def preprocess_line(gray: np.ndarray, window_width: int = GLYPH_SIZE) -> np.ndarray:
    """(H, W) uint8 of any polarity -> (28, W') uint8 white-on-black line, W' >= window_width (layout "line").

    Cropped to the ink with a margin of 20% of the ink height on every side (so the ink is about
    20 of the 28 rows, as in EMNISTLines), scaled to height 28 keeping the aspect ratio, then
    padded with black on the right up to `window_width` (the model needs one full window).
    Right only for input already drawn like EMNISTLines: lowercase letters come out half size.
    """
    a = _white_on_black(gray)
    top, bottom, left, right = normalize.ink_box(a)
    a = np.pad(a[top:bottom, left:right], max(1, round(0.2 * (bottom - top))))
    h, w = a.shape
    nw = max(1, round(w * GLYPH_SIZE / h))
    img = Image.fromarray(np.clip(a * 255.0, 0, 255).astype(np.uint8))
    line = np.asarray(img.resize((nw, GLYPH_SIZE), Image.Resampling.LANCZOS), dtype=np.uint8)
    if nw < window_width:
        line = np.pad(line, ((0, 0), (0, window_width - nw)))
    return line


def _check_shape(loaded: LoadedModel, glyphs: list[normalize.Glyph]) -> None:
    """Refuse a single character given to the line model and a line given to the character model."""
    top = min(g.top for g in glyphs)
    height = max(g.bottom for g in glyphs) - top
    width = glyphs[-1].right - glyphs[0].left
    if loaded.kind == "line" and len(glyphs) == 1 and width < LINE_ASPECT * height:
        raise PredictError("this looks like a single character; use the character model (--model models/cnn.pt)")
    if loaded.kind == "char" and len(glyphs) > 1 and width >= CHAR_LINE_ASPECT * height:
        raise PredictError(
            f"this looks like a line of about {len(glyphs)} characters; use the line model (--model models/line_cnn.pt)"
        )


def model_input_for(
    gray: np.ndarray, loaded: LoadedModel, *, layout: str = "glyphs", check_kind: bool = True
) -> np.ndarray:
    """The (28, W) uint8 white-on-black image a checkpoint is given for a grayscale image."""
    return _model_input(gray, loaded, layout=layout, check_kind=check_kind)[0]


def _find_ink(gray: np.ndarray, loaded: LoadedModel, layout: str) -> paper.Ink:
    """The ink as the layout reads it: the older whole-image rule for layout="line" (images drawn like
    EMNISTLines), a local threshold for the glyph layout and the character model, and a line model's
    line stood upright (paper.py)."""
    try:
        if layout == "line" and loaded.kind == "line":
            return paper.global_ink(gray)
        return paper.read_ink(gray, deslant=loaded.kind == "line")
    except BlankImageError as exc:
        raise PredictError(str(exc)) from exc


def _model_input(
    gray: np.ndarray, loaded: LoadedModel, *, layout: str = "glyphs", check_kind: bool = True
) -> tuple[np.ndarray, paper.Ink]:
    """(the image a checkpoint is given, the steps that found its ink): see `model_input_for`."""
    if layout not in LAYOUTS:
        raise PredictError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    ink = _find_ink(gray, loaded, layout)
    a = ink.upright
    window = int(loaded.model_kwargs.get("window_width", GLYPH_SIZE))
    try:
        work, glyphs = normalize.segment(a)
    except BlankImageError as exc:
        raise PredictError(str(exc)) from exc
    if loaded.kind == "line" and len(glyphs) > 1:  # one glyph ("=" too) is one character, whatever its bands
        lines = normalize.count_lines(work)
        if lines > 1:  # read as one line, the lines' glyphs interleave into nonsense
            raise SeveralLinesError(lines)
    as_is = layout == "line" and loaded.kind == "line" and gray.shape[0] == GLYPH_SIZE
    if check_kind and not as_is:  # a 28-px line read as a line was declared one: "a" is a line of one character
        _check_shape(loaded, glyphs)
    # not yet the checkpoint's measured box: docs/decisions.md, "What reading needs"
    fit = functools.partial(normalize.fit_glyph, box=GLYPH_BOX, stroke=_stroke(loaded))
    if loaded.kind == "char":
        return fit(a), ink
    if layout == "line":
        if as_is:  # already an EMNISTLines-sized line: the model sees it as it trained
            return _line_as_is(gray, window), ink
        return preprocess_line(gray, window_width=window), ink
    spaces, pitch = [False, *normalize.find_spaces(glyphs)], _pitch(loaded)
    cells, gaps = [], []
    for pieces, space in zip(cutting.cut_touching(glyphs, _piece_scorer(loaded, fit, pitch)), spaces, strict=True):
        for k, piece in enumerate(pieces):
            cells.append(fit(piece.ink))
            gaps.append(space and k == 0)
    return normalize.lay_out(cells, gaps[1:], pitch=pitch, min_width=window), ink


def _line_as_is(gray: np.ndarray, window: int) -> np.ndarray:
    """A 28-px-high line, only turned white on black (dark paper kept as it is) and padded to one window."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    line = (255 - gray if float(np.median(border)) > 127 else gray).astype(np.uint8)
    return np.pad(line, ((0, 0), (0, max(0, window - line.shape[1]))))


def _drawn(loaded: LoadedModel) -> dict:
    """What training measured of its data (training.data_statistics): `lines` for a line checkpoint,
    `glyphs` for a character one; empty for a checkpoint written without it (by hand, in tests)."""
    record = loaded.extra.get("lines" if loaded.kind == "line" else "glyphs")
    return record if isinstance(record, dict) else {}


def _pitch(loaded: LoadedModel) -> int:
    """The mean step between neighbouring glyphs of the lines a line checkpoint was trained on.

    As training measured it on those lines; from their overlaps when only those were recorded;
    the offline lines' 23 px for a checkpoint that records neither.
    """
    drawn = _drawn(loaded)
    if "pitch" in drawn:
        return round(float(drawn["pitch"]))
    if {"min_overlap", "max_overlap"} <= drawn.keys():
        return normalize.pitch_for(float(drawn["min_overlap"]), float(drawn["max_overlap"]))
    return normalize.PITCH


def _stroke(loaded: LoadedModel) -> float:
    """The stroke width of the glyphs a checkpoint was trained on (pixels of a 28x28 cell), as training measured
    it; normalize.STROKE_WIDTH (the offline glyphs') for a checkpoint that records none."""
    width = _drawn(loaded).get("stroke_width")
    return float(width) if isinstance(width, (int, float)) and width > 0 else normalize.STROKE_WIDTH


def _piece_scorer(loaded: LoadedModel, fit: Callable[[np.ndarray], np.ndarray], pitch: int) -> cutting.PieceScorer:
    """How sure a reader is that a piece of a glyph is one character (cutting.py groups pieces by it).

    The character model bundled with a reader (evaluate writes it into `line_reader.pt`) reads isolated
    glyphs best: its log-probability of its top class. A line checkpoint without one (or an ONNX file) reads
    each piece alone, fitted (`fit`) and laid out at `pitch` as the line itself will be: the log-probability of its
    best path when that path reads exactly one character, NOT_ONE_CHARACTER otherwise.
    """
    if loaded.glyph_model is not None:
        return functools.partial(_glyph_model_scores, loaded.glyph_model, fit)
    return functools.partial(_line_model_scores, loaded, fit, pitch)


def _glyph_model_scores(
    glyph_model: LoadedModel, fit: Callable[[np.ndarray], np.ndarray], inks: list[np.ndarray]
) -> np.ndarray:
    logits = _logits_in_chunks(glyph_model, np.stack([fit(ink) for ink in inks]))  # (N, classes)
    return logits.log_softmax(dim=1).max(dim=1).values.cpu().numpy()


def _line_model_scores(
    loaded: LoadedModel, fit: Callable[[np.ndarray], np.ndarray], pitch: int, inks: list[np.ndarray]
) -> np.ndarray:
    images = np.stack([normalize.lay_out([fit(ink)], [], pitch=pitch) for ink in inks])
    logits = _logits_in_chunks(loaded, images)  # (N, C, T)
    steps = loaded.model.output_length(images.shape[2])
    best = logits[:, :, :steps].log_softmax(dim=1).max(dim=1).values.sum(dim=1).cpu().numpy()
    lengths = torch.full((len(images),), steps, dtype=torch.long, device=logits.device)
    texts = [indices_to_text(row, loaded.mapping).strip() for row in reading_decoder(loaded)(logits, lengths)]
    return np.where([len(text) == 1 for text in texts], best, NOT_ONE_CHARACTER)


def _logits_in_chunks(loaded: LoadedModel, images: np.ndarray, chunk: int = 16 * BATCH_SIZE) -> torch.Tensor:
    """A model's float logits for many same-sized (28, W) inputs (a word's candidate pieces: hundreds), `chunk`
    at a time."""
    device = _device_of(loaded)
    with torch.inference_mode():
        return torch.cat(
            [loaded.model(to_model_input(images[i : i + chunk], device)).float() for i in range(0, len(images), chunk)]
        )


# --- models --------------------------------------------------------------------------------------


def load_model(
    checkpoint_path: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    expected_kind: Kind | None = None,
) -> LoadedModel:
    """A checkpoint rebuilt for prediction (on the GPU when there is one), or an exported `.onnx` file run by
    onnxruntime (OnnxNetwork); PredictError when it cannot be used."""
    if Path(checkpoint_path).suffix == ".onnx":
        return _load_onnx(Path(checkpoint_path), expected_kind)
    try:
        return load_checkpoint(
            checkpoint_path, map_location=default_device(device), expected_kind=expected_kind, needed_by="predict"
        )
    except CheckpointError as exc:
        raise PredictError(f"cannot predict: {exc}") from exc


class OnnxNetwork(torch.nn.Module):
    """An exported network (text_recognizer.export) behind the torch module interface that predict reads through:
    the same preprocessing, batching, decoders and confidences read it, while onnxruntime runs the network.
    No parameters: its inputs stay on the CPU."""

    def __init__(self, onnx: OnnxModel) -> None:
        super().__init__()
        self.onnx = onnx
        if onnx.kind == "line" and onnx.arch != "simple":
            self.window_width, self.window_stride = onnx.window_width, onnx.window_stride

    def output_length(self, image_width: int) -> int:
        return self.onnx.output_length(image_width)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        steps = None if lengths is None else lengths.cpu().numpy()
        return torch.from_numpy(self.onnx.run(x.cpu().numpy(), steps))


def _load_onnx(path: Path, expected_kind: Kind | None) -> LoadedModel:
    """An exported model as a LoadedModel whose network onnxruntime runs; its metadata holds what the checkpoint
    held (mapping, arch, the reading record, the drawn statistics)."""
    from text_recognizer.reading.onnx_model import OnnxModel  # onnxruntime: the optional onnx extra

    try:
        onnx = OnnxModel(path)
    except InputError as exc:
        raise PredictError(f"cannot predict: {exc}") from exc
    if expected_kind is not None and onnx.kind != expected_kind:
        raise PredictError(f"cannot predict: {path} is a {onnx.kind} model, not a {expected_kind} one")
    return LoadedModel(
        kind=onnx.kind,  # type: ignore[arg-type]  # "char" or "line", as exported
        model=OnnxNetwork(onnx).eval(),
        mapping=onnx.mapping,
        model_kwargs=onnx.model_kwargs,
        extra=onnx.extra,
        path=path,
    )


def _device_of(loaded: LoadedModel) -> torch.device:
    param = next(loaded.model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def read_array(
    gray: np.ndarray,
    loaded: LoadedModel,
    *,
    layout: str = "glyphs",
    check_kind: bool = True,
    decode: LineDecoder | None = None,
) -> Reading:
    """Read a (H, W) grayscale image (uint8, either polarity) with a loaded checkpoint.

    A char checkpoint gives one character and its top 5 classes (`layout` does not apply); a line
    checkpoint the CTC decode (`decode`: greedy by default, or evaluation.line_decoder's beam search; a simple
    checkpoint's argmax per window, evaluation.reading_decoder) of the
    glyph layout (or, with layout="line", of the whole line scaled to height 28). `model_input` is
    the image the model saw. With `check_kind`, a single character given to the line model or a
    line given to the character model is a PredictError saying which model to use, not a guess.
    Several lines of text given to a line checkpoint are always a PredictError (normalize.count_lines):
    read as one line, their glyphs would interleave into nonsense.
    """
    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.size == 0:
        raise PredictError(f"expected a (height, width) grayscale image, got shape {gray.shape}")
    images, found = candidate_inputs(gray, loaded, layout=layout, check_kind=check_kind)
    reading = most_confident(read_model_inputs(images, loaded, decode=decode))
    return dataclasses.replace(reading, steps=found)


def read_image(
    gray: np.ndarray,
    loaded: LoadedModel,
    *,
    layout: str = "auto",
    check_kind: bool = True,
    decode: LineDecoder | None = None,
) -> Reading | PageReading:
    """Read a (H, W) grayscale image as one line (layout "glyphs" or "line": read_array) or as a page of lines.

    "page" cuts the image into lines (page.find_lines) and reads each; "auto" reads a page when the
    one-line reader finds several lines (SeveralLinesError) and otherwise exactly as read_array with the
    glyph layout does, so a one-line image reads as it always did. All lines are read in one batched call.
    """
    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.size == 0:
        raise PredictError(f"expected a (height, width) grayscale image, got shape {gray.shape}")
    check_layout(loaded, layout)
    prepared = _prepare(gray, loaded, layout=layout, check_kind=check_kind, keep=True)
    return prepared.finish(iter(read_model_inputs(prepared.images(), loaded, decode=decode)))


def check_layout(loaded: LoadedModel, layout: str) -> None:
    """Refuse, before any image is read, a layout that is not one and a page given to a character model."""
    if layout not in IMAGE_LAYOUTS:
        raise PredictError(f"layout must be one of {', '.join(IMAGE_LAYOUTS)}, got {layout!r}")
    if layout == "page" and loaded.kind != "line":
        raise PredictError(f"reading a page needs a line checkpoint, got a {loaded.kind} one")


@dataclasses.dataclass
class _Prepared:
    """An image's model inputs before reading: one entry per line (a single one unless read as a page)."""

    lines: list[tuple[list[np.ndarray], paper.Ink | None]]  # each line's candidate inputs, and how its ink was found
    boxes: list[Box] | None  # each line's box when read as a page; None for one line
    layout: PageLayout | None = None

    def images(self) -> list[np.ndarray]:
        return [image for images, _ in self.lines for image in images]

    def finish(self, read: Iterator[Reading]) -> Reading | PageReading:
        """The image's reading from the readings of its `images()`, taken in order from `read`."""
        readings = [
            dataclasses.replace(most_confident([next(read) for _ in images]), steps=found)
            for images, found in self.lines
        ]
        if self.boxes is None:
            return readings[0]
        return PageReading(list(zip(self.boxes, readings, strict=True)), self.layout)


def _prepare(gray: np.ndarray, loaded: LoadedModel, *, layout: str, check_kind: bool, keep: bool) -> _Prepared:
    """The model inputs of an image as `layout` reads it (read_image); `keep`: also the ink steps and the page
    layout (large: read_files drops them)."""
    if layout != "page":
        try:
            one = "glyphs" if layout == "auto" else layout
            images, found = candidate_inputs(gray, loaded, layout=one, check_kind=check_kind)
            return _Prepared([(images, found if keep else None)], None)
        except SeveralLinesError:
            if layout != "auto":
                raise
    found_lines, prepared = prepare_lines(gray, loaded)
    return _Prepared(
        [(images, ink if keep else None) for images, ink in prepared],
        [line.box for line in found_lines.lines],
        found_lines if keep else None,
    )


def candidate_inputs(
    gray: np.ndarray, loaded: LoadedModel, *, layout: str, check_kind: bool
) -> tuple[list[np.ndarray], paper.Ink]:
    """The model inputs an image is read as: its layout's, and for a line already 28 px high read with the glyph
    layout, also the line as it is.

    A 28-px-high line may be drawn like the training lines (an EMNISTLines image: its overlapping glyphs
    merge, and cutting them apart and refitting them reads 6x worse) or be a tiny crop of a page; the
    model's own confidence (reading/confidence.py) tells which reading to keep (most_confident).
    """
    image, found = _model_input(gray, loaded, layout=layout, check_kind=check_kind)
    if loaded.kind == "line" and loaded.arch != "simple" and layout == "glyphs" and gray.shape[0] == GLYPH_SIZE:
        return [image, _line_as_is(gray, int(loaded.model_kwargs.get("window_width", GLYPH_SIZE)))], found
    return [image], found


def most_confident(readings: Sequence[Reading]) -> Reading:
    """The reading with the highest line confidence; the first (the layout's own) on a tie."""
    return max(readings, key=lambda r: -1.0 if r.confidence is None else r.confidence)


def read_model_inputs(
    images: Sequence[np.ndarray],
    loaded: LoadedModel,
    *,
    decode: LineDecoder | None = None,
    batch_size: int = BATCH_SIZE,
) -> list[Reading]:
    """Read prepared model inputs ((28, W) uint8, white on black: model_input_for's) in batches, in their order.

    Lines are sorted by width and each batch padded (black, on the right) to its widest, so little is padded;
    each line is still read only up to its own output length (evaluation.line_logits' `widths`), so a line reads
    as it reads alone. One decoder call per batch.
    """
    if loaded.kind == "line":
        try:
            read = reading_decoder(loaded, decode)
        except ValueError as exc:
            raise PredictError(str(exc)) from exc
    order = sorted(range(len(images)), key=lambda i: images[i].shape[1])
    out: list[Reading | None] = [None] * len(images)
    for start in range(0, len(order), batch_size):
        batch = [images[i] for i in order[start : start + batch_size]]
        readings = _read_lines(batch, loaded, read) if loaded.kind == "line" else _read_glyphs(batch, loaded)
        for i, reading in zip(order[start : start + batch_size], readings, strict=True):
            out[i] = reading
    return [r for r in out if r is not None]


def _read_lines(images: list[np.ndarray], loaded: LoadedModel, read: LineDecoder) -> list[Reading]:
    """One batch of line inputs, padded to the widest, each read up to its own width."""
    widths = [image.shape[1] for image in images]
    batch = np.stack([np.pad(image, ((0, 0), (0, max(widths) - image.shape[1]))) for image in images])
    with torch.inference_mode():
        logits, steps = line_logits(loaded, batch, _device_of(loaded), widths=widths)  # (B, C, T), (B,)
        rows = read(logits, steps)
        confidences = line_confidences(loaded, logits, steps, rows)
    return [
        Reading(
            text=indices_to_text(row, loaded.mapping),
            model_input=image,
            top_classes=[],
            kind=loaded.kind,
            char_confidences=[float(c) for c in confidence.chars],
            confidence=confidence.line,
        )
        for row, image, confidence in zip(rows, images, confidences, strict=True)
    ]


def _read_glyphs(images: list[np.ndarray], loaded: LoadedModel) -> list[Reading]:
    """One batch of glyph inputs (28 x 28) for the character model: the top classes, the first one's probability
    as its confidence."""
    with torch.inference_mode():
        logits = loaded.model(to_model_input(np.stack(images), _device_of(loaded)))  # (B, num_classes)
    probs = torch.softmax(logits.float(), dim=1).cpu()
    values, indices = probs.topk(min(TOP_CLASSES, probs.shape[1]), dim=1)
    out = []
    for image, p_row, i_row in zip(images, values.tolist(), indices.tolist(), strict=True):
        top = [(loaded.mapping[i], float(p)) for p, i in zip(p_row, i_row, strict=True)]
        out.append(
            Reading(
                text=top[0][0],
                model_input=image,
                top_classes=top,
                kind=loaded.kind,
                char_confidences=[top[0][1]],
                confidence=top[0][1],
            )
        )
    return out


def read_files(
    paths: Sequence[str | os.PathLike[str]],
    loaded: LoadedModel,
    *,
    layout: str = "glyphs",
    decode: LineDecoder | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    check_kind: bool = True,
    batch_size: int = BATCH_SIZE,
) -> Iterator[tuple[Path, Reading | PageReading | PredictError]]:
    """(path, its Reading, PageReading or the PredictError that stopped it) for every path, in their order: a bad
    file is its own error and the others are still read (`text-recognizer predict` with many inputs).

    Files are prepared CHUNK at a time (decoded, their ink found, a page cut into lines, laid out as model
    inputs) and all their inputs, a page's lines among them, read in batches of similar widths
    (read_model_inputs); only the small model inputs (and a page's line boxes) are kept, never more than CHUNK
    images. `layout` as read_image's; a bad one (or a page for a character model) is refused before any file.
    """
    check_layout(loaded, layout)
    for start in range(0, len(paths), CHUNK):
        chunk = [Path(p) for p in paths[start : start + CHUNK]]
        prepared: dict[int, _Prepared] = {}
        failed: dict[int, PredictError] = {}
        for k, path in enumerate(chunk):
            try:
                gray = load_image(path, max_pixels=max_pixels)
            except PredictError as exc:
                failed[k] = exc
                continue
            try:
                prepared[k] = _prepare(gray, loaded, layout=layout, check_kind=check_kind, keep=False)
            except PredictError as exc:
                failed[k] = PredictError(f"{shown_path(path)}: {exc}")
        flat = [image for one in prepared.values() for image in one.images()]
        read = iter(read_model_inputs(flat, loaded, decode=decode, batch_size=batch_size))
        readings = {k: one.finish(read) for k, one in prepared.items()}
        for k, path in enumerate(chunk):
            yield path, failed[k] if k in failed else readings[k]


def predict_file(
    image_path: str | os.PathLike[str],
    checkpoint_path: str | os.PathLike[str],
    *,
    expected_kind: Kind | None = None,
    device: str | torch.device | None = None,
    layout: str = "glyphs",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    check_kind: bool = False,
) -> str:
    """The text in an image: one character for a char checkpoint, a greedy CTC decode for a line one.

    `expected_kind` ("char" or "line") makes a checkpoint of the other kind an error instead of
    silently switching between single-glyph and line reading. The shape check of read_array is
    off by default here (a library caller may mean to read one glyph with the line model); the
    CLI and the web page turn it on.
    """
    gray = load_image(image_path, max_pixels=max_pixels)  # the cheap check first: a bad path fails before the model
    loaded = load_model(checkpoint_path, device=device, expected_kind=expected_kind)
    try:
        return read_array(gray, loaded, layout=layout, check_kind=check_kind).text
    except PredictError as exc:
        raise PredictError(f"{image_path}: {exc}") from exc
