"""The `text-recognizer` command: read an image with a trained model, serve a page to write on, or look at the data."""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

DEFAULT_MAX_PIXELS = 40_000_000  # the same as predict.DEFAULT_MAX_PIXELS; not imported, so --help stays fast
READER = "models/line_reader.pt"  # dvc.yaml's evaluate output: the line checkpoint with the decoder it was read with
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")  # what a folder's images are
GLOB_CHARS = frozenset("*?[")
# `line` last, so that a one-line image's row keeps every older column where it was (its `line` is empty)
TSV_COLUMNS = (
    "path", "text", "confidence", "low_confidence", "char_confidences", "decoder", "model_sha256", "error", "line"
)  # fmt: skip


def _pixels(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number of pixels, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0..65535, got {value}")
    return value


def _opset(text: str) -> int:
    value = int(text)
    if not 13 <= value <= 21:
        raise argparse.ArgumentTypeError(f"must be an ONNX opset 13..21, got {value}")
    return value


def _max_pixels_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-pixels",
        type=_pixels,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse larger images, read from the header before decoding (default: {DEFAULT_MAX_PIXELS:,})",
    )


def _check_default_model(model: Path) -> None:
    """The default reader is made by `dvc repro`; say so rather than only 'not found'."""
    from text_recognizer.reading.predict import PredictError

    if model == Path(READER) and not model.exists():
        raise PredictError(
            f"{READER} not found: run `dvc repro` (the evaluate stage writes it), or name a checkpoint with --model"
        )


def _decoder_name(args: argparse.Namespace, reading: object) -> str:
    """--decoder when given, else the decoder the evaluate stage picked on the val lines (the checkpoint's
    `reading` record); greedy for a checkpoint without a record (one that was never evaluated)."""
    if args.decoder is not None:
        return args.decoder
    return str(reading.get("decoder", "greedy")) if isinstance(reading, dict) else "greedy"


def _line_decoder(args: argparse.Namespace, loaded):  # (argparse, predict.LoadedModel) -> evaluation.LineDecoder
    """greedy, or beam search with the language model, as the evaluate stage read with this checkpoint (a simple,
    per-window checkpoint: the argmax of each window).

    The decoder, unless --decoder names one, is the evaluate stage's pick; the beam width, LM weight and
    length bonus come from the checkpoint's `reading` record (written by evaluate into models/line_reader.pt),
    and the LM must be the one evaluated (same sha256): never from a params.yaml.
    """
    from text_recognizer.data.download import file_digest
    from text_recognizer.lit_models.windows import window_decode
    from text_recognizer.reading.decoder_choice import recorded_beam
    from text_recognizer.reading.evaluation import line_decoder
    from text_recognizer.reading.predict import PredictError

    reading = loaded.extra.get("reading")
    if loaded.kind == "line" and loaded.arch == "simple":  # one class per window: no CTC output to search
        if args.decoder == "beam":
            raise PredictError(
                f"{args.model} is a per-window line model (line_model.arch simple), read by the argmax of each "
                "window: --decoder beam applies to CTC models only"
            )
        return window_decode
    if loaded.kind == "char" or _decoder_name(args, reading) == "greedy":
        return line_decoder("greedy")
    if not isinstance(reading, dict):
        raise PredictError(
            f"{args.model} records no decoder settings (it was not evaluated): read with models/line_reader.pt, "
            "which the evaluate stage writes (dvc repro evaluate), or pass --decoder greedy"
        )
    try:
        beam_width, beam = recorded_beam(reading)
    except KeyError as exc:
        raise PredictError(
            f"{args.model} records no {exc.args[0]} (an older evaluate wrote it): rerun `dvc repro evaluate`, "
            "or pass --decoder greedy"
        ) from None
    if not args.lm.is_file():
        raise PredictError(f"no language model at {args.lm}: run `dvc repro char_lm`, or pass --decoder greedy")
    if file_digest(args.lm) != reading["lm_sha256"]:
        raise PredictError(
            f"{args.lm} is not the language model {args.model} was evaluated with "
            f"(sha256 {reading['lm_sha256'][:12]}…): pass that one with --lm, or rerun `dvc repro evaluate`"
        )
    from text_recognizer.reading.char_lm import CharLM

    try:
        lm = CharLM.load(args.lm)
    except (OSError, ValueError, KeyError) as exc:
        raise PredictError(f"{args.lm} is not a language model of this project: {exc}") from exc
    return beam.reader(beam_width, lm)


def _predict(args: argparse.Namespace) -> int:
    """One image file in the text format: today's reading (the text alone, or one line of error); anything else
    (several inputs, a folder, a pattern, --format jsonl or tsv) is read in batches, one result per image."""
    if len(args.images) == 1 and args.format == "text" and _is_plain(args.images[0]):
        return _predict_one(args, Path(args.images[0]))
    return _predict_many(args)


def _is_plain(arg: str) -> bool:
    """An argument that names one file (or nothing there): not a folder, and not a pattern that names no file."""
    # os.path's tests, not Path's: a path under a folder closed to us is "not there" (load_image says why), not
    # a PermissionError
    return not os.path.isdir(arg) and (os.path.lexists(arg) or not GLOB_CHARS & set(arg))


def _expand(args: list[str]) -> Iterator[tuple[Path, str | None]]:
    """(path, None) for every file the arguments name, in their order, or (argument, why it names none).

    A folder names its image files (IMAGE_SUFFIXES, not its subfolders), sorted by name; a pattern (* ? [, quoted
    so the shell leaves it) its matches, sorted, folders left out; anything else itself, checked when it is read.
    """
    from text_recognizer.reading.predict import shown_path

    for arg in args:
        path = Path(arg)
        if os.path.isdir(arg):
            try:
                files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
            except OSError as err:
                yield path, f"cannot read the folder {shown_path(path)}: {(err.strerror or str(err)).lower()}"
                continue
            if not files:
                yield path, f"{shown_path(path)} is a directory, not an image file, and holds none to read"
            yield from ((p, None) for p in files)
        elif not _is_plain(arg):
            matches = sorted(Path(m) for m in glob.glob(arg, recursive=True) if not Path(m).is_dir())
            if not matches:
                yield path, f"{shown_path(arg)}: no image file matches this pattern"
            yield from ((p, None) for p in matches)
        else:
            yield path, None


def _predict_one(args: argparse.Namespace, image: Path) -> int:
    from text_recognizer.io import OutputError, atomic_path, check_new_output
    from text_recognizer.reading.predict import (
        PredictError,
        check_layout,
        load_image,
        load_model,
        read_image,
        shown_path,
    )

    try:
        if args.show_input is not None:  # before any work: a directory or an existing file is never replaced
            check_new_output(args.show_input, overwrite=args.overwrite)
        gray = load_image(image, max_pixels=args.max_pixels)  # a bad image fails before the model loads
        _check_default_model(args.model)
        loaded = load_model(args.model)
        check_layout(loaded, args.layout)  # the model's, not the image's: said without the image's name
        decode = _line_decoder(args, loaded)
        try:
            reading = read_image(gray, loaded, layout=args.layout, decode=decode)
        except PredictError as exc:
            raise PredictError(f"{shown_path(image)}: {exc}") from exc
    except (PredictError, OutputError) as err:  # checkpoint problems arrive as PredictError too
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.show_input is not None:
        try:
            check_new_output(args.show_input, overwrite=args.overwrite)  # again: the path may have changed meanwhile
            figure = _figure(gray, reading)
            with atomic_path(args.show_input, suffix=".png") as tmp:
                figure.save(tmp, format="PNG")
        except OutputError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except OSError as err:
            print(f"error: cannot write {args.show_input}: {err.strerror or err}", file=sys.stderr)
            return 1
    if not reading.text.strip("\n"):  # a page's text is its lines' joined by newlines
        hint = "" if args.show_input else " (--show-input OUT.png draws each step to what it saw)"
        print(f"error: {image}: the model read no characters{hint}", file=sys.stderr)
        return 1
    print(reading.text)  # a page: one line of text per line found, top to bottom
    return 0


def _figure(gray, reading):  # (np.ndarray, predict.Reading | predict.PageReading) -> PIL.Image.Image
    """What --show-input draws: a line's steps to the model input, or a page's numbered line boxes and readings."""
    from PIL import Image

    from text_recognizer.reading.predict import PageReading
    from text_recognizer.reading.show_steps import page_figure, steps_figure

    if isinstance(reading, PageReading) and reading.layout is not None:
        texts = [f"{r.text} ({r.confidence:.2f})" for _, r in reading.lines]
        return page_figure(gray, reading.layout, texts)
    if reading.steps:
        return steps_figure(gray, reading.steps, reading.model_input)
    return Image.fromarray(reading.model_input)


def _predict_many(args: argparse.Namespace) -> int:
    """Every input read with one model load, in batches; one result per image in input order (--format), a bad
    image its own error, and status 1 at the end when any image failed."""
    from tqdm import tqdm

    from text_recognizer.data.download import file_digest
    from text_recognizer.reading.predict import PredictError, check_layout, load_model, read_files, shown_path

    try:
        if args.show_input is not None:
            raise PredictError("--show-input draws one image: give a single image file, in the text format")
        _check_default_model(args.model)
        loaded = load_model(args.model)
        check_layout(loaded, args.layout)  # a page for a character model: refused before any image is read
        decode = _line_decoder(args, loaded)
        digest = file_digest(args.model)
    except (PredictError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    entries = list(_expand(args.images))
    found = [path for path, why in entries if why is None]
    reading = loaded.extra.get("reading")
    decoder = _used_decoder(args, loaded, reading)
    threshold = _threshold(reading, decoder)
    out = _Output(args.format, decoder=decoder, digest=digest, threshold=threshold)
    failed = 0
    results = read_files(found, loaded, layout=args.layout, decode=decode, max_pixels=args.max_pixels)
    bar = tqdm(
        total=len(entries), file=sys.stderr, unit="image", disable=not (sys.stderr.isatty() and len(entries) > 1)
    )
    with bar:
        for path, why in entries:
            if why is None:
                _, result = next(results)
                if isinstance(result, PredictError):
                    why = str(result)
                elif not result.text.strip("\n"):  # a page's: its lines' texts joined by newlines
                    why = f"{shown_path(path)}: the model read no characters"
            if why is None:
                out.reading(path, result)
            else:
                failed += 1
                out.error(path, why)
            bar.update()
    return 1 if failed else 0


def _used_decoder(args: argparse.Namespace, loaded, reading: object) -> str:  # loaded: predict.LoadedModel
    """The decoder's name as records give it: greedy or beam, argmax for a per-window line model or a glyph model."""
    if loaded.kind == "char" or loaded.arch == "simple":
        return "argmax"
    return _decoder_name(args, reading)


def _threshold(reading: object, decoder: str) -> float | None:
    """The reader's low-confidence threshold (chosen by evaluate on the val lines), when it was chosen for the
    lines read with `decoder`; None otherwise (no record, no threshold, or another decoder)."""
    if not isinstance(reading, dict) or reading.get("confidence_decoder") != decoder:
        return None
    threshold = reading.get("low_confidence_threshold")
    return float(threshold) if isinstance(threshold, int | float) else None


class _Output:
    """Writes predict's results in one format: text (PATH<TAB>text, a page's lines one row each; errors on stderr),
    jsonl (one record per image, a page's lines in `lines`) or tsv (one row per line of text)."""

    def __init__(self, form: str, *, decoder: str, digest: str, threshold: float | None) -> None:
        self.form, self.decoder, self.digest, self.threshold = form, decoder, digest, threshold
        if form == "tsv":
            print("\t".join(TSV_COLUMNS), flush=True)

    def _low(self, confidence: float | None) -> bool | None:
        return None if self.threshold is None or confidence is None else bool(confidence < self.threshold)

    def _line(self, reading) -> dict:  # reading: predict.Reading
        return {
            "text": reading.text,
            "confidence": round(float(reading.confidence), 4),
            "low_confidence": self._low(reading.confidence),
            "char_confidences": [round(c, 4) for c in reading.char_confidences],
        }

    def _record(self, path: Path, result) -> dict:  # result: predict.Reading | predict.PageReading
        """The jsonl record: a line's fields, or for a page its text (lines joined by newlines), its least confident
        line's confidence (low when any line is) and its lines, each with its box (x0, y0, x1, y1 in pixels)."""
        from text_recognizer.reading.predict import PageReading

        if not isinstance(result, PageReading):
            return {"path": str(path), **self._line(result), "decoder": self.decoder, "model_sha256": self.digest}
        lines = [{**self._line(r), "box": [box.left, box.top, box.right, box.bottom]} for box, r in result.lines]
        return {
            "path": str(path),
            "text": result.text,
            "confidence": round(float(result.confidence), 4),
            "low_confidence": self._low(result.confidence),
            "lines": lines,
            "decoder": self.decoder,
            "model_sha256": self.digest,
        }

    def _row(self, path: Path, reading, line: int | None) -> str:  # reading: predict.Reading
        from text_recognizer.reading.predict import shown_path

        fields = self._line(reading)
        low, chars = fields["low_confidence"], fields["char_confidences"]
        fields.update(
            path=shown_path(path),
            low_confidence="" if low is None else str(low).lower(),
            char_confidences=",".join(f"{c:g}" for c in chars),
            decoder=self.decoder,
            model_sha256=self.digest,
            line="" if line is None else line,
        )
        return "\t".join(str(fields.get(c, "")) for c in TSV_COLUMNS)

    def reading(self, path: Path, result) -> None:  # result: predict.Reading | predict.PageReading
        from text_recognizer.reading.predict import PageReading, shown_path

        lines = result.lines if isinstance(result, PageReading) else [(None, result)]
        if self.form == "jsonl":
            print(json.dumps(self._record(path, result), ensure_ascii=False), flush=True)
        elif self.form == "tsv":
            page = isinstance(result, PageReading)
            for k, (_, r) in enumerate(lines, start=1):
                print(self._row(path, r, k if page else None), flush=True)
        else:
            for _, r in lines:
                print(f"{shown_path(path)}\t{r.text}", flush=True)

    def error(self, path: Path, why: str) -> None:
        from text_recognizer.reading.predict import shown_path

        if self.form == "jsonl":
            print(json.dumps({"path": str(path), "error": why}, ensure_ascii=False), flush=True)
        elif self.form == "tsv":
            row = {"path": shown_path(path), "error": " ".join(why.split())}
            print("\t".join(row.get(c, "") for c in TSV_COLUMNS), flush=True)
        else:
            print(f"error: {why}", file=sys.stderr, flush=True)


def _serve(args: argparse.Namespace) -> int:
    try:
        from text_recognizer.app import serve
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] != "gradio":
            raise
        print("error: the web page needs the app extra: pip install 'text-recognizer[app]'", file=sys.stderr)
        return 1
    from text_recognizer.reading.predict import PredictError

    try:
        _check_default_model(args.model)
        from text_recognizer.reading.predict import load_model

        # the reader's pick, as predict reads (a missing checkpoint is refused by serve, in one line)
        decode, threshold = None, None
        if args.model.is_file():
            loaded = load_model(args.model)
            decode = _line_decoder(args, loaded)
            reading = loaded.extra.get("reading")
            threshold = _threshold(reading, _used_decoder(args, loaded, reading))  # marks low-confidence lines
        serve(
            model_path=args.model,
            port=args.port,
            host=args.host,
            max_pixels=args.max_pixels,
            decode=decode,
            low_confidence=threshold,
        )
    except PredictError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # the port is taken, or the host is not this machine's
        print(f"error: cannot serve on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    return 0


def _show_lines(args: argparse.Namespace) -> int:
    """`show-lines`: write the grid, refusing to replace a file unasked; a failure is one line on stderr, status 1."""
    from text_recognizer.data.emnist_lines import save_sample_grid
    from text_recognizer.io import OutputError, check_new_output

    try:
        check_new_output(args.out_png, overwrite=args.overwrite)
    except OutputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        save_sample_grid(args.lines_h5, args.out_png, split=args.split, n=args.n)
    except OutputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError) as err:
        print(f"error: {args.lines_h5}: {err}", file=sys.stderr)
        return 1
    print(args.out_png)
    return 0


def _export(args: argparse.Namespace) -> int:
    """`export MODEL`: the network as an ONNX file with what reading needs in its metadata; one line on failure."""
    from text_recognizer.errors import is_project_error
    from text_recognizer.export import export_onnx

    out = args.output if args.output is not None else args.model.with_suffix(".onnx")
    try:
        written = export_onnx(args.model, out, opset=args.opset, overwrite=args.overwrite, exporter=args.exporter)
    except Exception as err:  # the project's errors (a bad path, not a checkpoint, no onnx installed) in one line
        if not is_project_error(err):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(written)
    return 0


def _add_export(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`export MODEL --format onnx`: a model to read elsewhere, with onnxruntime and no torch."""
    export = commands.add_parser(
        "export",
        help="write a checkpoint as an ONNX file (dynamic batch and width) to read with onnxruntime",
        description="Write MODEL's network as ONNX with dynamic batch and (line models) width axes. Its metadata "
        "holds the mapping, the arch and its settings, the reading record that the evaluate stage wrote (decoder, "
        "beam settings, the LM's sha256, the low-confidence threshold), the drawn statistics and the checkpoint's "
        "sha256. `text-recognizer predict --model FILE.onnx` reads with it (needs the onnx extra: "
        "pip install 'text-recognizer[onnx]').",
    )
    export.add_argument("model", type=Path, help=f"a checkpoint (e.g. {READER}, models/cnn.pt)")
    export.add_argument("--format", choices=["onnx"], default="onnx", help="onnx (the only format, the default)")
    export.add_argument("-o", "--output", type=Path, default=None, help="a new .onnx file (default: MODEL.onnx)")
    export.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    export.add_argument(
        "--exporter",
        choices=["dynamo", "torchscript"],
        default="dynamo",
        help="torch's exporter: dynamo (default; every head) or torchscript (faster, refuses a transformer head)",
    )
    export.add_argument("--opset", type=_opset, default=18, help="ONNX opset, 13..21 (default 18)")


def _model_option(parser: argparse.ArgumentParser) -> None:
    """--model, the same for predict and serve: both read with the evaluate stage's reader by default."""
    parser.add_argument(
        "--model",
        type=Path,
        default=Path(READER),
        help=f"checkpoint (default: {READER}, the line model as the evaluate stage read it; models/cnn.pt for glyphs), "
        "or an .onnx file written by `text-recognizer export` (run by onnxruntime)",
    )


def _add_predict(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`predict IMAGE`: the options that choose how an image is brought to the model and decoded."""
    predict = commands.add_parser(
        "predict",
        help="print the text of line images and pages of lines (or the class of glyph images)",
        description="Read line images, pages of several lines (a note, a paragraph: cut into lines, top to bottom, "
        "see --layout) or glyph images (with models/cnn.pt) with one model load, in batches. One image file in "
        "the text format prints its text alone (a page: one line of text per line found). Several inputs, a folder "
        "or a pattern print results in input order: text: PATH<TAB>TEXT, one row per line of text (a page gives "
        "several rows with its path); jsonl: one JSON object per image (path, text, confidence, low_confidence, "
        "char_confidences, decoder, model_sha256; a page has `lines` instead of char_confidences: each line's "
        "text, confidence, low_confidence, char_confidences and box [x0, y0, x1, y1] in the image's pixels, "
        "while its text is the lines' joined by newlines and its confidence the least confident line's; a bad "
        "image: path and error); tsv: a header row, then one row per line of text with those columns, error and "
        "line (a page's line number from 1; empty for an image read as one line). A bad image is reported (text: "
        "a line on stderr) and the others are still read. Exit status: 0 when every image was read, 1 when any "
        "was not (or the model or an option was refused, before any image is read), 2 for a misused command line.",
    )
    predict.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="PNG or JPEG files (dark ink on light paper or the reverse), folders (their image files, sorted) or "
        "quoted patterns such as 'scans/*.png' (expanded here, sorted)",
    )
    predict.add_argument(
        "--format",
        choices=["text", "jsonl", "tsv"],
        default="text",
        help="text (default), jsonl or tsv. confidence: greedy, the line's CTC probability of its text per "
        "character; beam, the text's share of the beam's probability; a glyph's softmax probability; a page's, its "
        "least confident line's; char_confidences: one per character; low_confidence: below the threshold "
        "the evaluate stage chose on the val lines (null/empty when the model records none for this decoder)",
    )
    _model_option(predict)
    predict.add_argument(
        "--layout",
        choices=["auto", "page", "glyphs", "line"],
        default="auto",
        help="auto (default): a page when the image holds several lines of text, else one line read as glyphs; "
        "page: always cut the image into lines (a line model only), each read as glyphs; glyphs: one line, each "
        "glyph fitted into its own 28-px cell, as EMNIST; line: one line scaled whole to height 28, for images "
        "already drawn like EMNISTLines. glyphs and line refuse an image of several lines",
    )
    _decoder_options(predict)
    predict.add_argument(
        "--show-input",
        metavar="OUT.png",
        help="draw each step to a new PNG: the image, the ink mask, the line stood upright, what the model saw; "
        "for a page, each line's numbered box on the image and its reading (one image file in the text format "
        "only; an existing file only with --overwrite)",
    )
    predict.add_argument("--overwrite", action="store_true", help="let --show-input replace an existing file")
    _max_pixels_option(predict)


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`serve`: the page's checkpoint, and where it listens (this machine only unless --host says otherwise)."""
    serve = commands.add_parser("serve", help="start a local web page to write on and see what the model reads")
    _model_option(serve)
    serve.add_argument("--port", type=_port, default=7860, help="default: 7860")
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine only)")
    _decoder_options(serve)
    _max_pixels_option(serve)


def _decoder_options(parser: argparse.ArgumentParser) -> None:
    """--decoder and --lm, the same for predict and serve: both read as the evaluate stage picked."""
    parser.add_argument(
        "--decoder",
        choices=["greedy", "beam"],
        default=None,
        help="line models: greedy, or beam search with the character language model (--lm), which helps on prose and "
        "can hurt on digits and rare words. Default: the one the evaluate stage picked on the val lines (the model's "
        "record; greedy for a model without one). Beam width, LM weight and length bonus: the record's. A per-window "
        "line model (line_model.arch simple) reads the argmax of each window: greedy means that, beam does not apply",
    )
    parser.add_argument(
        "--lm", type=Path, default=Path("models/char_lm.npz"), help="language model (default: models/char_lm.npz)"
    )


def _add_show_lines(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`show-lines LINES_H5 OUT_PNG`: a grid of sample lines, the first look at a new data file."""
    show = commands.add_parser("show-lines", help="write a PNG grid of sample lines with their text")
    show.add_argument("lines_h5", type=Path, help="an emnist_lines.h5 file")
    show.add_argument("out_png", help="a new PNG file (an existing file only with --overwrite)")
    show.add_argument("--overwrite", action="store_true", help="replace OUT_PNG if it exists")
    show.add_argument("--split", default="test", choices=["train", "val", "test"])
    show.add_argument("-n", type=int, default=8, help="number of lines")


def _parser() -> argparse.ArgumentParser:
    """The command line, one helper per subcommand, so that each command's options read together."""
    parser = argparse.ArgumentParser(prog="text-recognizer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_predict(commands)
    _add_serve(commands)
    _add_show_lines(commands)
    _add_export(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "predict":
        return _predict(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "show-lines":
        return _show_lines(args)
    if args.command == "export":
        return _export(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
