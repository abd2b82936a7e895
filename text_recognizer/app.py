"""A local web page to write on: draw a line (or upload a photo of a note) and see what the model reads.

`text-recognizer serve` runs it (install the extra: `pip install 'text-recognizer[app]'`). The page
uses the CLI's own predict code (`load_model`, `load_image`, `read_array`, `read_image`), so what it shows
is what `text-recognizer predict` prints for the same image, plus the normalised image the model saw and,
for a character checkpoint, the five most likely classes. An image of several lines (a note) is read as a
page, as `predict --layout auto` reads it: each line with its confidence, low ones marked.

An upload reaches the page's code as the file itself (see `_wire`): Gradio never decodes it, so a
file that is not an image, a truncated one or one over the pixel limit gets `load_image`'s one-line
refusal, naming the file as the person uploaded it, never Gradio's error or the server's temp path.

Gradio phones home by default (usage analytics, a version check); both are switched off here before
gradio is imported, and the page is never shared through a public link.
"""

from __future__ import annotations

import os
import re

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read by gradio at import and launch: never send usage data

from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr
import numpy as np
from PIL import Image

from text_recognizer.lit_models.ctc import greedy_decode
from text_recognizer.reading.evaluation import LineDecoder
from text_recognizer.reading.predict import (
    DEFAULT_MAX_PIXELS,
    LAYOUTS,
    LoadedModel,
    PageReading,
    PredictError,
    Reading,
    SeveralLinesError,
    load_image,
    load_model,
    read_array,
    read_image,
    shown_path,
)

DISPLAY_HEIGHT = 112  # the 28-px model input is shown enlarged (nearest neighbour) so its pixels can be seen
LINE_CANVAS = (1200, 300)  # (width, height): room for a short line of handwriting
CHAR_CANVAS = (400, 400)
PREVIEW_SIDE = 1600  # the uploaded image is shown back at most this many pixels wide or high
BRUSH = gr.Brush(colors=["#000000"], default_color="#000000", color_mode="fixed", default_size=12)
# Gradio 6's editor starts with no tool picked, even with no upload source, so a first stroke draws nothing;
# picking the brush once the editor is on the page lets a person just start writing.
PICK_BRUSH_JS = """
() => {
  let tries = 0;
  const pick = () => {
    const brush = document.querySelector('#sketch button[aria-label="Brush"]');
    if (brush) { brush.click(); } else if (++tries < 100) { setTimeout(pick, 100); }
  };
  pick();
}
"""
NOTHING_YET = "Write on the canvas in separate letters (not joined-up), or upload a photo: the reading appears here."
LINE_GAP = 8  # rows of LINE_GAP_COLOUR between a page's lines in the shown model inputs
LINE_GAP_COLOUR = 96
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")


def to_gray(value: Any) -> np.ndarray | None:
    """(H, W) uint8 grayscale of what a Gradio image component gives, or None when it holds nothing.

    Accepts the ImageEditor's dict (its `composite`: background and strokes flattened), a PIL image
    or a numpy array of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4). Transparent pixels count as
    white paper: a sketch's untouched canvas is transparent, and its colour values there are arbitrary.
    """
    if isinstance(value, dict):
        value = value.get("composite")
    if value is None:
        return None
    if isinstance(value, Image.Image):
        value = np.asarray(value.convert("RGBA") if value.mode not in ("L", "RGB", "RGBA") else value)
    a = np.asarray(value)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        return _to_uint8(a)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.size == 0:
        raise PredictError(f"cannot read an image array of shape {a.shape}")
    rgb = _to_uint8(a[:, :, :3]).astype(np.float32)
    if a.shape[2] == 4:
        alpha = _to_uint8(a[:, :, 3]).astype(np.float32)[:, :, None] / 255.0
        rgb = rgb * alpha + 255.0 * (1.0 - alpha)
    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma, as PIL's convert("L")
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """uint8 of an integer or float array: 16-bit scaled down, floats in [0, 1] scaled up, never clipped."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.integer):
        top = 65535 if a.max(initial=0) > 255 else 255
        return np.rint(a.astype(np.float64) * (255 / top)).astype(np.uint8)
    f = np.nan_to_num(a.astype(np.float64))
    return np.clip(np.rint(f * 255 if f.max(initial=0) <= 1.0 else f), 0, 255).astype(np.uint8)


def enlarge(image: np.ndarray, height: int = DISPLAY_HEIGHT) -> np.ndarray:
    """The model input blown up by a whole factor (nearest neighbour): every model pixel stays a sharp square."""
    factor = max(1, height // max(1, image.shape[0]))
    return np.kron(image, np.ones((factor, factor), dtype=np.uint8))


def stack_lines(images: list[np.ndarray]) -> np.ndarray:
    """A page's model inputs, each enlarged, top to bottom, padded (black) to the widest and set apart by a band
    of LINE_GAP_COLOUR, so that line k of the list is the k-th shown."""
    big = [enlarge(image) for image in images]
    width = max(b.shape[1] for b in big)
    gap = np.full((LINE_GAP, width), LINE_GAP_COLOUR, dtype=np.uint8)
    rows: list[np.ndarray] = []
    for b in big:
        rows += [gap] if rows else []
        rows.append(np.pad(b, ((0, 0), (0, width - b.shape[1]))))
    return np.vstack(rows)


def _plain(text: str) -> str:
    """Text as Markdown shows it literally: a path like line_cnn.pt must not turn into italics, a | into a cell."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _confidence(confidence: float | None, threshold: float | None) -> str:
    """A confidence as the page shows it, marked **low** below the reader's threshold (none: never marked)."""
    if confidence is None:
        return "-"
    low = threshold is not None and confidence < threshold
    return f"{confidence:.2f} **low**" if low else f"{confidence:.2f}"


def page_status(reading: PageReading, threshold: float | None = None) -> str:
    """The status of a page: how many lines, then a table of each line's text and confidence, low ones marked."""
    n = len(reading.lines)
    rows = [f"Read {n} line{'s' if n != 1 else ''}:", "", "| line | text | confidence |", "|---:|---|---:|"]
    for k, (_, line) in enumerate(reading.lines, start=1):
        text = _plain(line.text) if line.text.strip() else "*(nothing read)*"
        rows.append(f"| {k} | {text} | {_confidence(line.confidence, threshold)} |")
    return "\n".join(rows)


def line_status(reading: Reading, threshold: float | None = None) -> str:
    """The status of one line (or glyph): its text and confidence, marked when low."""
    if not reading.text:
        return "The model read no characters in this image."
    return f"Read `{reading.text}` (confidence {_confidence(reading.confidence, threshold)})."


Outputs = tuple[str, np.ndarray | None, dict[str, float] | None, str, np.ndarray | None]
UploadOutputs = tuple[str, np.ndarray | None, dict[str, float] | None, str, np.ndarray | None, np.ndarray | None]


class Upload(NamedTuple):
    """An uploaded file: where the server keeps it, and its name as the person uploaded it."""

    path: str
    name: str


def as_upload(value: Any) -> Upload | None:
    """The File component's value as it comes from the browser, unprocessed (see `_wire`), as an Upload.

    Accepts Gradio's file data (a dict or FileData with `path` and `orig_name`), a list of them (the first
    one), an Upload, a path, or nothing. The name is the person's, on one line (control characters escaped).
    """
    if isinstance(value, list | tuple) and not isinstance(value, Upload):
        value = value[0] if value else None
    if not value:
        return None
    if isinstance(value, Upload):
        return value
    if isinstance(value, str | os.PathLike):
        path, name = os.fspath(value), None
    else:
        get = value.get if isinstance(value, dict) else lambda key: getattr(value, key, None)
        path, name = get("path"), get("orig_name")
        if not path:
            return None
    name = Path(name or path).name
    return Upload(path, shown_path(name))


class Reader:
    """One loaded checkpoint behind the page's callbacks; loaded once, at start-up."""

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        decode: LineDecoder | None = None,
        low_confidence: float | None = None,
    ) -> None:
        self.loaded: LoadedModel = load_model(model_path)
        self.max_pixels = max_pixels
        self.decode = decode if decode is not None else greedy_decode  # the CLI passes the reader's pick
        self.low_confidence = low_confidence  # the reader's threshold (the CLI passes it), marks low lines

    def read(self, gray: np.ndarray | None, layout: str = "auto") -> Outputs:
        """(text, enlarged model input, top classes, status, gray) for the page; a bad image becomes a message.

        "auto" reads one line as read_array's glyph layout does and an image of several lines as a page
        (read_image); "glyphs" and "line" read one line. The grayscale image comes back too (kept in a
        gr.State) so that a change of layout rereads it.
        """
        if gray is None:
            return "", None, None, NOTHING_YET, None
        try:
            reading = self._read(gray, layout)
        except PredictError as err:
            return (*_refusal(err), gray)
        if isinstance(reading, PageReading):
            seen = stack_lines([line.model_input for _, line in reading.lines])
            return reading.text, seen, None, page_status(reading, self.low_confidence), gray
        top = {label: float(p) for label, p in reading.top_classes} or None
        return reading.text, enlarge(reading.model_input), top, line_status(reading, self.low_confidence), gray

    def _read(self, gray: np.ndarray, layout: str) -> Reading | PageReading:
        """One line by read_array (looked up here: tests record its calls), a page by read_image."""
        if layout in LAYOUTS:
            try:
                return read_array(gray, self.loaded, layout=layout, decode=self.decode)
            except SeveralLinesError as err:  # the page's way to a page is its layout choice, not --layout
                raise PredictError(
                    f"found {err.lines} lines of text; this layout reads one line: choose the first layout to read "
                    "each line"
                ) from err
        if layout == "auto":
            try:
                return read_array(gray, self.loaded, layout="glyphs", decode=self.decode)
            except SeveralLinesError:
                pass
        return read_image(gray, self.loaded, layout="page", decode=self.decode)

    def read_drawing(self, value: Any, layout: str = "auto") -> Outputs:
        """The sketchpad's composite; an untouched (all paper) canvas counts as nothing drawn yet."""
        try:
            gray = to_gray(value)
        except PredictError as err:
            return (*_refusal(err), None)
        if gray is not None and int(gray.min()) == int(gray.max()):
            gray = None
        return self.read(gray, layout)

    def read_upload(self, upload: Any, layout: str = "auto") -> UploadOutputs:
        """An uploaded file, decoded by the CLI's own `load_image` (pixel limit, 16-bit, palette, EXIF, alpha).

        Gives `read`'s outputs and a preview of the image as decoded (grayscale, at most PREVIEW_SIDE
        pixels a side). A refusal names the file by its own name, never by where the server keeps it,
        and clears the previous upload's reading and preview.
        """
        upload = as_upload(upload)
        if upload is None:
            return (*self.read(None, layout), None)
        try:
            gray = load_image(upload.path, max_pixels=self.max_pixels)
        except PredictError as err:
            return (*_refusal(_named(err, upload)), None, None)
        return (*self.read(gray, layout), preview(gray))


def _named(err: PredictError, upload: Upload) -> PredictError:
    """The error with the server's path of the upload (and its folder) replaced by the file's own name."""
    message = str(err)
    for where in (str(Path(upload.path)), upload.path):
        message = message.replace(where, upload.name)
    folder = str(Path(upload.path).parent)
    if folder not in ("", "."):
        message = message.replace(folder + os.sep, "")
    return PredictError(message)


def preview(gray: np.ndarray, side: int = PREVIEW_SIDE) -> np.ndarray:
    """The decoded upload for showing back: scaled down (never up) to at most `side` pixels a side."""
    if max(gray.shape) <= side:
        return gray
    img = Image.fromarray(gray)
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(img)


def _refusal(err: PredictError) -> tuple[str, None, None, str]:
    """A PredictError as the page shows it: a toast and a one-line status, never a traceback."""
    message = (str(err).splitlines() or [type(err).__name__])[0]
    gr.Warning(message)
    return "", None, None, f"**Cannot read this image:** {_plain(message)}"


def build_app(
    model_path: str | os.PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    decode: LineDecoder | None = None,
    low_confidence: float | None = None,
) -> gr.Blocks:
    """The page for one checkpoint (raises PredictError if it cannot be loaded); start it with `launch()`.

    Uploads with more than `max_pixels` pixels are refused (read from the header, before decoding);
    a line model's outputs are read with `decode` (default greedy; `serve` passes the reader's pick), and
    readings less confident than `low_confidence` (the reader's threshold; None: none) are marked low.
    """
    reader = Reader(model_path, max_pixels=max_pixels, decode=decode, low_confidence=low_confidence)
    is_char = reader.loaded.kind == "char"
    what = "one character" if is_char else "a line of separate characters"
    photo = "a photo" if is_char else "a photo (a note of several lines is read line by line)"
    with gr.Blocks(title="text-recognizer", analytics_enabled=False) as app:
        gr.Markdown(
            f"# text-recognizer\nWrite {what} with the mouse or a finger, or upload {photo}. "
            f"Model: `{Path(model_path).name}` ({reader.loaded.kind} checkpoint). "
            "Joined-up letters are cut apart where the character model reads the pieces best, which often fails: "
            "the models learned from separate EMNIST glyphs. "
            "Measured on held-apart development data: separate printed letters and digits read well (about 6 % of "
            "characters wrong on font lines); single real handwritten glyphs mostly right (86-88 %); real "
            "handwritten digit strings mostly right (13 % of characters wrong with `text-recognizer predict --decoder "
            "greedy`, 43 % with the prose language model this page reads with); real handwritten words poorly "
            "(about 37 % wrong, 45 % with the language model): write large, separate, upright characters."
        )
        inputs = _inputs(is_char)
        results = _results(is_char)
        _wire(app, reader, inputs, results)
    return app


class _Inputs(NamedTuple):
    """The page's input components, as `_wire` connects them to the Reader."""

    sketch: gr.ImageEditor
    read_button: gr.Button
    upload: gr.File
    uploaded: gr.Image
    layout: gr.Radio


class _Results(NamedTuple):
    """The components that show a reading, in page order (`_wire` lists them in the order Reader gives them)."""

    text: gr.Textbox
    status: gr.Markdown
    seen: gr.Image
    top: gr.Label


def _inputs(is_char: bool) -> _Inputs:
    """The two ways in (a tab to draw, a tab to upload) and the layout choice, which only a line model has."""
    with gr.Tabs():
        with gr.Tab("Draw", id="draw"):
            sketch, read_button = _drawing(is_char)
        with gr.Tab("Upload a photo", id="upload"):
            upload, uploaded = _upload()
    layout = gr.Radio(
        [
            ("a line or a page of lines, found by itself (each glyph in its own 28 px cell)", "auto"),
            ("one line, each glyph in its own 28 px cell (handwriting, photos)", "glyphs"),
            ("whole line scaled to 28 px (input that already looks like EMNISTLines)", "line"),
        ],
        value="auto",
        label="Layout",
        visible=not is_char,  # a character checkpoint always reads one fitted glyph
        elem_id="layout",
    )
    return _Inputs(sketch, read_button, upload, uploaded, layout)


def _drawing(is_char: bool) -> tuple[gr.ImageEditor, gr.Button]:
    """The canvas, sized for what the checkpoint reads (one character or a line), and its read button."""
    width, height = CHAR_CANVAS if is_char else LINE_CANVAS
    sketch = gr.ImageEditor(
        label="Write here",
        type="numpy",
        image_mode="RGBA",
        sources=(),
        brush=BRUSH,
        eraser=gr.Eraser(default_size=24),
        layers=False,
        transforms=(),
        canvas_size=(width, height),
        fixed_canvas=True,
        elem_id="sketch",
    )
    read_button = gr.Button("Read the drawing", variant="primary", elem_id="read-drawing")
    return sketch, read_button


def _upload() -> tuple[gr.File, gr.Image]:
    """The file picker and the preview of the upload as it was read (grayscale), which only the page fills."""
    upload = gr.File(
        label="Photo or scan",
        file_count="single",
        file_types=["image"],  # the picker's filter; the server does not check it (preprocess=False)
        height=120,
        elem_id="upload",
    )
    uploaded = gr.Image(
        label="The uploaded image, as read (grayscale)",
        type="numpy",
        format="png",
        interactive=False,
        height=320,
        elem_id="upload-preview",
    )
    return upload, uploaded


def _results(is_char: bool) -> _Results:
    """The reading: text and status, what the model saw, and the top classes (a character model's only)."""
    with gr.Row():
        with gr.Column(scale=3):
            text = gr.Textbox(label="Text read", interactive=False, max_lines=12, elem_id="reading")
            status = gr.Markdown(NOTHING_YET, elem_id="status")
            seen = gr.Image(
                label="What the model saw: the normalised input, enlarged",
                type="numpy",
                format="png",
                interactive=False,
                height=DISPLAY_HEIGHT + 60,
                elem_id="model-input",
            )
        top = gr.Label(label="Top 5 classes", num_top_classes=5, visible=is_char, scale=2, elem_id="top-classes")
    return _Results(text, status, seen, top)


def _wire(app: gr.Blocks, reader: Reader, inputs: _Inputs, results: _Results) -> None:
    """The events: each way in goes to its Reader method, and a change of layout rereads the last image."""
    sketch, read_button, upload, uploaded, layout = inputs
    last = gr.State(None)  # the last image read, for rereading it when the layout changes
    outputs = [results.text, results.seen, results.top, results.status, last]
    sketch.change(reader.read_drawing, [sketch, layout], outputs, trigger_mode="always_last", show_progress="hidden")
    read_button.click(reader.read_drawing, [sketch, layout], outputs)
    # preprocess=False: the file reaches read_upload as uploaded. gr.Image would decode it with Pillow first
    # (a non-image, a truncated file or one past Pillow's 179 MP guard then failed inside Gradio, with its
    # own error naming the server's temp file), and gr.File would refuse a file by its extension, also
    # with its own error. load_image decides, with one line naming the file as the person uploaded it.
    upload.change(reader.read_upload, [upload, layout], [*outputs, uploaded], preprocess=False)
    layout.change(reader.read, [last, layout], outputs)
    app.load(None, None, None, js=PICK_BRUSH_JS)


def serve(
    model_path: str | os.PathLike[str],
    port: int = 7860,
    host: str = "127.0.0.1",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    decode: LineDecoder | None = None,
    low_confidence: float | None = None,
) -> None:
    """Serve the page until Ctrl+C: local only by default (host 127.0.0.1), never through a share link.

    Uploads with more than `max_pixels` pixels are refused; readings below `low_confidence` are marked low.
    Raises PredictError when the checkpoint cannot be used and OSError when the port is taken.
    """
    app = build_app(model_path, max_pixels=max_pixels, decode=decode, low_confidence=low_confidence)
    app.launch(
        server_name=host,
        server_port=port,
        share=False,
        ssr_mode=False,
        mcp_server=False,
        inbrowser=False,
        show_error=True,
        quiet=True,  # Gradio's banner suggests share=True, which this page never uses
        prevent_thread_lock=True,
    )
    print(f"text-recognizer: reading with {model_path} on {app.local_url} (Ctrl+C stops)", flush=True)
    app.block_thread()
