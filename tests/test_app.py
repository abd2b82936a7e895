"""The web page of `text-recognizer serve`: its image handling, and the page itself in a real browser.

The browser tests start the page on 127.0.0.1 (a free port), drive Debian's `chromium` headless
through Playwright, upload or draw an image and check that the page shows what
`predict.read_array` reads for it. Every request the page makes to anywhere but the test server
is refused and recorded, so a page that phones home fails.

They skip when gradio, playwright or chromium is missing, except in CI (CI=true) or with
TEXT_RECOGNIZER_REQUIRE_BROWSER=1, where a missing piece is a failure: a skip there would hide a
missing install step. Install: `pip install -e '.[app,browser-test]'` and `apt-get install -y chromium`.
TEXT_RECOGNIZER_SCREENSHOT=docs/web_page.png also writes the drawn-line screenshot there.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import math
import os
import shutil
import socket
import struct
import time
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from urllib.parse import urljoin

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from text_recognizer.metadata import EMNIST_CLASSES, GLYPH_SIZE, LINE_TOKENS
from text_recognizer.models.checkpoint import save_checkpoint
from text_recognizer.models.line_cnn import LineCNN
from text_recognizer.models.resnet import ResNetClassifier
from text_recognizer.reading.page import Box
from text_recognizer.reading.predict import (
    DEFAULT_MAX_PIXELS,
    LoadedModel,
    PageReading,
    PredictError,
    Reading,
    load_image,
    load_model,
    read_array,
    read_image,
)

try:
    from tests import pages as P
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    import pages as P

try:
    from tests.tiny_nets import TINY_CHAR_NET, TINY_LINE_NET
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from tiny_nets import TINY_CHAR_NET, TINY_LINE_NET

REQUIRED = os.environ.get("CI", "").lower() == "true" or os.environ.get("TEXT_RECOGNIZER_REQUIRE_BROWSER") == "1"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
TIMEOUT_MS = 60_000  # a shared 2-core machine: model load, first render and the event round trip take seconds


def missing(what: str, install: str) -> None:
    """Skip (or, where the browser test must run, fail) for a missing piece, saying how to install it."""
    message = f"{what} is not installed ({install})"
    if REQUIRED:
        pytest.fail(f"{message}; CI must run the browser test", pytrace=False)
    pytest.skip(message)


try:
    from text_recognizer import app as web  # imports gradio
except ModuleNotFoundError as err:
    if err.name is None or err.name.split(".")[0] != "gradio":
        raise
    web = None


@pytest.fixture(autouse=True, scope="module")
def _gradio() -> None:
    """Every test here needs the app extra: each one skips (or fails, in CI) on its own without it."""
    if web is None:
        missing("gradio", "pip install -e '.[app]'")


# --- checkpoints and images -------------------------------------------------------------------------


def tiny_checkpoint(path: Path, kind: str) -> Path:
    """An untrained checkpoint: enough to check that the page gives exactly what read_array gives."""
    torch.manual_seed(0)
    if kind == "char":
        kwargs = TINY_CHAR_NET
        model, mapping = ResNetClassifier(**kwargs), EMNIST_CLASSES
    else:
        kwargs = TINY_LINE_NET
        model, mapping = LineCNN(**kwargs), LINE_TOKENS
    save_checkpoint(path, kind=kind, model_kwargs=kwargs, state_dict=model.state_dict(), mapping=mapping)
    return path


def text_image(text: str, size: int, pad: int = 20) -> Image.Image:
    """Dark text on white paper in Pillow's bundled font: an image no pipeline code drew."""
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 255)
    ImageDraw.Draw(img).text((pad - left, pad - top), text, fill=0, font=font)
    return img


def blank_png(width: int, height: int) -> bytes:
    """A valid 1-bit white PNG of any size, written row by row: 20000x10000 is under 40 KB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\xff" * ((width + 7) // 8)  # filter "none", then 8 white pixels a byte
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def glyph_canvas() -> np.ndarray:
    """What the sketchpad sends for a stroke: RGBA, transparent (with arbitrary colour) except the ink."""
    a = np.zeros((60, 40, 4), dtype=np.uint8)
    a[..., :3] = 123  # colour under fully transparent pixels is arbitrary; it must read as paper
    a[10:50, 18:23] = (0, 0, 0, 255)
    return a


# --- image handling (no browser) ---------------------------------------------------------------------


def test_gradio_analytics_are_off() -> None:
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    import gradio.analytics

    assert not gradio.analytics.analytics_enabled()


def test_to_gray_composites_a_transparent_sketch_on_white_paper() -> None:
    gray = web.to_gray({"background": None, "layers": [], "composite": glyph_canvas()})
    assert gray.dtype == np.uint8 and gray.shape == (60, 40)
    assert gray[0, 0] == 255 and gray[30, 20] == 0
    half = glyph_canvas()
    half[30, 20, 3] = 128  # half-transparent black ink over white paper is mid gray
    assert 120 <= web.to_gray(half)[30, 20] <= 135


def test_to_gray_of_other_inputs() -> None:
    assert web.to_gray(None) is None
    assert web.to_gray({"background": None, "layers": [], "composite": None}) is None
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    assert web.to_gray(rgb)[0, 0] == 76  # ITU-R 601 luma of pure red, as PIL's convert("L")
    sixteen = np.array([[0, 32768, 65535]], dtype=np.uint16)
    assert web.to_gray(sixteen).tolist() == [[0, 128, 255]]  # scaled, not clipped to 255
    assert web.to_gray(Image.new("LA", (4, 2), (0, 0))).min() == 255  # transparent is paper
    with pytest.raises(PredictError, match="shape"):
        web.to_gray(np.zeros((2, 3, 5), dtype=np.uint8))


def test_enlarge_keeps_every_pixel_a_sharp_square() -> None:
    image = np.arange(28 * 56, dtype=np.uint8).reshape(28, 56)
    big = web.enlarge(image)
    assert big.shape == (112, 224)
    assert np.array_equal(big[::4, ::4], image) and np.array_equal(big[3::4, 3::4], image)


def test_reader_gives_what_read_array_gives(tmp_path: Path) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "cnn.pt", "char")
    reader = web.Reader(checkpoint)
    text, seen, top, status, kept = reader.read_drawing(glyph_canvas())
    expected = read_array(web.to_gray(glyph_canvas()), load_model(checkpoint))
    assert text == expected.text and text
    assert np.array_equal(seen, web.enlarge(expected.model_input))
    assert list(top) == [label for label, _ in expected.top_classes] and len(top) == 5
    assert top[expected.text] == pytest.approx(expected.top_classes[0][1])
    assert expected.text in status and kept is not None


def test_reader_shows_a_predict_error_as_a_message(tmp_path: Path) -> None:
    reader = web.Reader(tiny_checkpoint(tmp_path / "line_cnn.pt", "line"))
    with pytest.warns(UserWarning, match="single character"):  # gr.Warning outside a request
        text, seen, top, status, _ = reader.read_drawing(glyph_canvas())
    assert (text, seen, top) == ("", None, None)
    assert status.startswith("**Cannot read this image:**") and "single character" in status
    assert "\n" not in status
    with pytest.warns(UserWarning):
        *_, status = web._refusal(PredictError("my_line_photo.png is not readable\nsecond line"))
    assert status.endswith("my\\_line\\_photo.png is not readable")  # one line; no _italics_ in Markdown


def test_reader_rereads_with_the_layout_asked_for(tmp_path: Path) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "line_cnn.pt", "line")
    gray = np.asarray(text_image("hello world", size=30))
    reader = web.Reader(checkpoint)
    for layout in ("glyphs", "line"):
        expected = read_array(gray, load_model(checkpoint), layout=layout)
        text, seen, _, _, kept = reader.read(gray, layout)
        assert text == expected.text and np.array_equal(seen, web.enlarge(expected.model_input))
        assert kept is gray
    glyphs, line = (reader.read(gray, layout)[1] for layout in ("glyphs", "line"))
    assert glyphs.shape != line.shape  # the two layouts do differ, so the check above means something


def note_image(lines: list[str], size: int = 36, gap: int = 14) -> np.ndarray:
    """Lines of text_image one under another, left-aligned, `gap` rows of paper between them: a note."""
    rows = [np.asarray(text_image(line, size=size, pad=6)) for line in lines]
    width = max(r.shape[1] for r in rows)
    parts = []
    for row in rows:
        parts += [np.pad(row, ((0, gap), (0, width - row.shape[1])), constant_values=255)]
    return np.pad(np.vstack(parts), 20, constant_values=255)


def test_reader_reads_a_note_as_a_page_and_one_layout_refuses_it(tmp_path: Path) -> None:
    """auto (the default) reads an image of 3 lines as read_image's page: the lines' texts, one table row each, and
    their model inputs stacked; the one-line layouts refuse it, pointing at the layout that reads it."""
    checkpoint = tiny_checkpoint(tmp_path / "line_cnn.pt", "line")
    gray = note_image(["hello world", "good day 42", "bye now"])
    expected = read_image(gray, load_model(checkpoint), layout="page")
    assert isinstance(expected, PageReading) and len(expected.lines) == 3
    reader = web.Reader(checkpoint)
    text, seen, top, status, kept = reader.read(gray)
    assert text == expected.text and top is None and kept is gray
    assert status.startswith("Read 3 lines:") and status.count("\n| ") == 4  # the header and a row per line
    assert seen.shape[0] == 3 * web.DISPLAY_HEIGHT + 2 * web.LINE_GAP
    widest = max(r.model_input.shape[1] for _, r in expected.lines) * (web.DISPLAY_HEIGHT // 28)
    assert seen.shape[1] == widest
    for k, (_, line) in enumerate(expected.lines):
        top_row = k * (web.DISPLAY_HEIGHT + web.LINE_GAP)
        shown = seen[top_row : top_row + web.DISPLAY_HEIGHT, : line.model_input.shape[1] * 4]
        assert np.array_equal(shown, web.enlarge(line.model_input))
    with pytest.warns(UserWarning, match="found 3 lines of text; this layout reads one line"):
        text, seen, _, status, _ = reader.read(gray, "glyphs")
    assert (text, seen) == ("", None) and "choose the first layout" in status


def test_the_page_status_lists_each_line_and_marks_low_ones() -> None:
    def line(text: str, confidence: float) -> tuple[Box, Reading]:
        return Box(0, 1, 0, 1), Reading(text, np.zeros((28, 28), np.uint8), [], "line", confidence=confidence)

    reading = PageReading([line("buy milk", 0.93), line("a|b_c", 0.41), line("", 0.2)])
    rows = web.page_status(reading, threshold=0.5).splitlines()
    assert rows[0] == "Read 3 lines:" and len(rows) == 7
    assert rows[4] == "| 1 | buy milk | 0.93 |"
    assert rows[5] == "| 2 | a\\|b\\_c | 0.41 **low** |"  # a | in the text does not open a cell
    assert rows[6] == "| 3 | *(nothing read)* | 0.20 **low** |"
    assert "low" not in web.page_status(reading)  # no threshold: nothing marked
    one = reading.lines[1][1]
    assert web.line_status(one, 0.5) == "Read `a|b_c` (confidence 0.41 **low**)."
    assert web.line_status(one, 0.3) == "Read `a|b_c` (confidence 0.41)."


def test_reader_reads_nothing_from_an_empty_canvas(tmp_path: Path) -> None:
    reader = web.Reader(tiny_checkpoint(tmp_path / "cnn.pt", "char"))
    blank = glyph_canvas()
    blank[..., 3] = 0
    assert reader.read_drawing(blank) == ("", None, None, web.NOTHING_YET, None)
    assert reader.read_upload(None) == ("", None, None, web.NOTHING_YET, None, None)


def test_reader_refuses_an_unreadable_upload_by_its_own_name(tmp_path: Path) -> None:
    """The server keeps an upload in a temp folder; the message names the file as the person uploaded it."""
    reader = web.Reader(tiny_checkpoint(tmp_path / "cnn.pt", "char"), max_pixels=1000)
    kept = tmp_path / "server-temp-1234"
    kept.mkdir()
    bad = kept / "notes.png"
    bad.write_text("not an image")
    with pytest.warns(UserWarning, match="not a readable image"):
        text, seen, top, status, last, shown = reader.read_upload(web.Upload(str(bad), "my notes.png"))
    assert (text, seen, top, last, shown) == ("", None, None, None, None)
    assert status.startswith("**Cannot read this image:** my notes.png is not a readable image (PNG, JPEG, ...)")
    assert str(kept) not in status and "BufferedReader" not in status
    big = kept / "big.png"
    Image.new("L", (50, 30), 255).save(big)  # 1500 pixels, over this reader's limit of 1000
    with pytest.warns(UserWarning, match="above the limit of 1,000"):
        *_, status, _, _ = reader.read_upload(web.Upload(str(big), "big.png"))
    assert "big.png is 50x30 = 1,500 pixels" in status and str(kept) not in status


def test_an_upload_is_named_as_the_person_named_it() -> None:
    """The page takes the File component's value unprocessed: Gradio's file data, with the original name."""
    sent = {"path": "/tmp/gradio/0a1b/x.png", "orig_name": "my\nphoto.png", "size": 3, "meta": {}}
    assert web.as_upload(sent) == web.Upload("/tmp/gradio/0a1b/x.png", "my\\nphoto.png")  # one line
    assert web.as_upload([{"path": "/srv/a.png", "orig_name": None}]) == web.Upload("/srv/a.png", "a.png")
    assert web.as_upload("/srv/b.png") == web.Upload("/srv/b.png", "b.png")
    assert web.as_upload(None) is None and web.as_upload([]) is None and web.as_upload({"path": None}) is None


def test_reader_shows_back_the_upload_as_read(tmp_path: Path) -> None:
    reader = web.Reader(tiny_checkpoint(tmp_path / "cnn.pt", "char"))
    image = tmp_path / "A.png"
    text_image("A", size=80).save(image)
    text, *_, last, shown = reader.read_upload(str(image))
    assert text and np.array_equal(shown, load_image(image)) and np.array_equal(last, shown)
    wide = np.full((100, 4000), 255, dtype=np.uint8)
    assert web.preview(wide).shape == (40, web.PREVIEW_SIDE)  # scaled down for the page, never up


def test_build_app_refuses_a_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(PredictError):
        web.build_app(tmp_path / "absent.pt")


def test_serve_is_local_and_never_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    launched: dict[str, object] = {}
    monkeypatch.setattr(web.gr.Blocks, "launch", lambda self, **kwargs: launched.update(kwargs))
    monkeypatch.setattr(web.gr.Blocks, "block_thread", lambda self: launched.update(blocked=True))
    real_build_app = web.build_app

    def build_app(*args, **kwargs):
        launched.update(kwargs)
        return real_build_app(*args, **kwargs)

    monkeypatch.setattr(web, "build_app", build_app)
    web.serve(tiny_checkpoint(tmp_path / "cnn.pt", "char"), port=7999)
    assert launched["blocked"]  # serves until Ctrl+C
    assert launched["max_pixels"] == DEFAULT_MAX_PIXELS
    web.serve(tiny_checkpoint(tmp_path / "cnn.pt", "char"), port=7999, max_pixels=1234)
    assert launched["max_pixels"] == 1234  # `serve --max-pixels N`
    assert launched["share"] is False and launched["server_name"] == "127.0.0.1" and launched["server_port"] == 7999


def test_the_server_contacts_nothing_but_this_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start a page and load it: no DNS lookup and no connection beyond loopback (no analytics, no version check)."""
    reached: list[str] = []
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def is_loopback(host: object) -> bool:
        try:
            return ipaddress.ip_address(str(host)).is_loopback
        except ValueError:
            return str(host) == "localhost"

    def getaddrinfo(host, *args, **kwargs):
        if not is_loopback(host):
            reached.append(f"lookup {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        if isinstance(address, tuple) and not is_loopback(address[0]):
            reached.append(f"connect {address}")
            raise OSError("tests reach only 127.0.0.1")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    with served(tiny_checkpoint(tmp_path / "cnn.pt", "char")) as url:
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200 and b"text-recognizer" in response.read()
        time.sleep(1)  # a version check or analytics thread would have started by now
    assert not reached


# --- in a real browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian Chromium driven by Playwright (its own browser download cannot reach the internet)."""
    if importlib.util.find_spec("playwright") is None:
        missing("playwright", "pip install -e '.[browser-test]'")
    if CHROMIUM is None:
        missing("chromium", "apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    """Wraps predict.read_array inside the pages, keeping what each checkpoint was given and answered."""

    def __init__(self) -> None:
        self.calls: list[tuple[Path, np.ndarray, Reading]] = []

    def __call__(self, gray: np.ndarray, loaded: LoadedModel, **kwargs: object) -> Reading:
        reading = read_array(gray, loaded, **kwargs)
        self.calls.append((Path(loaded.path).resolve(), gray.copy(), reading))
        return reading


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    """One recorder for every page of this module (the pages look read_array up in text_recognizer.app)."""
    record = Recorder()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(web, "read_array", record)
        yield record


@contextmanager
def served(model_path: Path, **kwargs: object) -> Iterator[str]:
    """The page for a checkpoint on 127.0.0.1 at a free port, closed afterwards (kwargs: build_app's)."""
    app = web.build_app(model_path, **kwargs)
    port = free_port()
    app.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, share=False, ssr_mode=False, quiet=True
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        app.close()


@pytest.fixture(scope="module")
def models(browser: object, request: pytest.FixtureRequest) -> Path:
    """The offline models (conftest's `offline_models`), asked for only once the browser is known to be there:
    without TEXT_RECOGNIZER_TEST_MODELS or a cached copy they take some 20 minutes to train."""
    return request.getfixturevalue("offline_models")


@pytest.fixture(scope="module")
def line_page(models: Path, recorder: Recorder) -> Iterator[str]:
    with served(models / "line_cnn.pt") as url:
        yield url


@pytest.fixture(scope="module")
def char_page(models: Path, recorder: Recorder) -> Iterator[str]:
    with served(models / "cnn.pt") as url:
        yield url


LIMIT = 100_000  # pixels: a small --max-pixels, so that an image over it is cheap to make


@pytest.fixture(scope="module")
def limited_page(browser: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An untrained glyph checkpoint (it always reads some character) behind a page with a small pixel limit."""
    with served(tiny_checkpoint(tmp_path_factory.mktemp("limited") / "cnn.pt", "char"), max_pixels=LIMIT) as url:
        yield url


@pytest.fixture
def page(browser):
    """A fresh tab that may talk only to 127.0.0.1; anything else is refused and must not happen."""
    tab = browser.new_page(viewport={"width": 1280, "height": 900})
    tab.set_default_timeout(TIMEOUT_MS)
    outside: list[str] = []

    def guard(route) -> None:
        url = route.request.url
        if url.startswith(("http://127.0.0.1:", "data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    tab.route("**/*", guard)
    yield tab
    tab.close()
    assert not outside, f"the page reached outside 127.0.0.1: {outside}"


def shown_reading(tab) -> str:
    """The page's 'Text read' once the status says the model has answered (or refused)."""
    tab.wait_for_function(
        """() => { const s = document.querySelector('#status');
                   return s && /^(Read |The model read no|Cannot read)/.test(s.innerText.trim()); }"""
    )
    return tab.locator("#reading textarea").input_value()


def upload(tab, url: str, image: Path) -> str:
    tab.goto(url)
    tab.get_by_role("tab", name="Upload a photo").click()
    tab.locator("#upload input[type=file]").set_input_files(str(image))
    return shown_reading(tab)


def upload_again(tab, image: Path) -> str:
    """Upload another file on the same page, as a person does: clear the one shown (x), then pick the new one."""
    tab.locator("#upload button[aria-label=Clear]").click()
    tab.locator("#status").get_by_text(web.NOTHING_YET).wait_for()
    tab.locator("#upload input[type=file]").set_input_files(str(image))
    return shown_reading(tab)


def assert_refused(tab, name: str, because: str) -> None:
    """The page shows our one-line refusal naming the file, and nothing of the refused (or previous) reading."""
    status = tab.locator("#status").inner_text().strip()
    assert status.startswith(f"Cannot read this image: {name} ") and because in status, status
    assert "\n" not in status
    assert tab.locator("#reading textarea").input_value() == ""
    assert tab.locator("#model-input img").count() == 0 and tab.locator("#upload-preview img").count() == 0
    assert tab.locator("#top-classes .confidence-set").count() == 0
    assert tab.locator("span.error").count() == 0  # Gradio's red "Error" badge on a component
    shown = tab.locator("body").inner_text()
    for word in ("Error", "Traceback", web.gr.utils.get_upload_folder(), "BufferedReader"):
        assert word not in shown, f"the page shows {word!r}: {shown}"


def shown_model_input(tab) -> np.ndarray:
    """The 'What the model saw' image exactly as the page serves it (PNG, so lossless), as uint8 gray."""
    tab.wait_for_function("() => document.querySelector('#model-input img')?.naturalWidth > 0")
    src = tab.locator("#model-input img").get_attribute("src")
    response = tab.request.get(urljoin(tab.url, src))
    assert response.ok, src
    return np.asarray(Image.open(BytesIO(response.body())).convert("L"))


def glyph_cells(enlarged: np.ndarray) -> int:
    """How many separate runs of inked columns a shown model input has: one per glyph drawn."""
    factor = enlarged.shape[0] // GLYPH_SIZE  # model inputs are 28 rows high
    inked = (enlarged[::factor, ::factor] > 127).any(axis=0)
    return int(np.count_nonzero(inked[1:] & ~inked[:-1]) + inked[0])


def test_page_reads_an_uploaded_line_as_predict_does(page, line_page: str, models: Path, tmp_path: Path):
    image = tmp_path / "hello.png"
    text_image("hello world 42", size=40).save(image)
    expected = read_array(load_image(image), load_model(models / "line_cnn.pt"))
    assert expected.text.strip(), "the line model reads nothing in the test line: not a useful check"

    assert upload(page, line_page, image) == expected.text
    assert np.array_equal(shown_model_input(page), web.enlarge(expected.model_input))
    assert page.locator("#status").inner_text().startswith("Read")
    assert not page.locator("#top-classes").is_visible()  # no class list for a line checkpoint
    page.screenshot(path=str(tmp_path / "uploaded_line.png"), full_page=True)
    assert (tmp_path / "uploaded_line.png").stat().st_size > 0


def test_page_shows_the_top_5_classes_of_a_glyph(page, char_page: str, models: Path, tmp_path: Path):
    image = tmp_path / "A.png"
    text_image("A", size=80).save(image)
    expected = read_array(load_image(image), load_model(models / "cnn.pt"))

    assert upload(page, char_page, image) == expected.text
    rows = page.locator("#top-classes .confidence-set")
    rows.nth(4).wait_for()
    assert rows.count() == 5
    shown = [(row.locator("dt").inner_text(), float(row.locator("meter").get_attribute("value"))) for row in rows.all()]
    assert [label for label, _ in shown] == [label for label, _ in expected.top_classes]
    assert [p for _, p in shown] == pytest.approx([p for _, p in expected.top_classes], abs=1e-6)
    page.screenshot(path=str(tmp_path / "glyph.png"), full_page=True)


def test_page_shows_a_refusal_not_a_traceback(page, line_page: str, tmp_path: Path):
    image = tmp_path / "dot.png"
    text_image("o", size=60).save(image)  # one glyph: the line model refuses it, naming the other model

    assert upload(page, line_page, image) == ""
    status = page.locator("#status").inner_text()
    assert status.startswith("Cannot read this image:") and "single character" in status
    assert "Traceback" not in page.content()


def test_page_reads_an_uploaded_note_line_by_line(page, models: Path, tmp_path: Path):
    """A composed 3-line page: the page shows a table of 3 lines, each with the text read_image reads and its
    confidence, the line below the reader's threshold marked low, and all three lines in 'Text read'."""
    pool = P.emnist_test_lines(models / "emnist_lines_test.h5")
    pg = P.make_page(pool, np.random.default_rng(3), 3, "clean", 0.0, (4, 10), 40)
    image = tmp_path / "note.png"
    Image.fromarray(pg.gray).save(image)
    expected = read_image(load_image(image), load_model(models / "line_cnn.pt"))
    assert isinstance(expected, PageReading) and len(expected.lines) == 3
    confidences = sorted(r.confidence for _, r in expected.lines)
    assert confidences[0] < confidences[1], "no line to mark low: not a useful check"
    threshold = (confidences[0] + confidences[1]) / 2
    with served(models / "line_cnn.pt", low_confidence=threshold) as url:
        assert upload(page, url, image) == expected.text
        rows = page.locator("#status table tbody tr")
        assert rows.count() == 3
        for k, (row, (_, line)) in enumerate(zip(rows.all(), expected.lines, strict=True), start=1):
            number, text, confidence = (cell.inner_text().strip() for cell in row.locator("td").all())
            assert number == str(k) and " ".join(text.split()) == " ".join(line.text.split())
            low = line.confidence < threshold
            assert confidence == f"{line.confidence:.2f}" + (" low" if low else ""), confidence
        assert page.locator("#status").inner_text().startswith("Read 3 lines")
        assert page.locator("#status table strong").count() == 1  # the one line below the threshold
        shown = shown_model_input(page)
        assert shown.shape[0] == 3 * web.DISPLAY_HEIGHT + 2 * web.LINE_GAP  # the three lines the model saw
        page.screenshot(path=str(tmp_path / "note.png.shot.png"), full_page=True)


def not_an_image(folder: Path) -> tuple[Path, str]:
    path = folder / "notes.png"
    path.write_text("a shopping list, not an image")
    return path, "is not a readable image (PNG, JPEG, ...)"


def truncated_png(folder: Path) -> tuple[Path, str]:
    path = folder / "cut off.png"
    whole = BytesIO()
    text_image("cut off half way", size=40).save(whole, format="PNG")
    path.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])  # the header is whole, the pixels are not
    return path, "is not a readable image (PNG, JPEG, ...): image file is truncated"


def over_the_limit(folder: Path) -> tuple[Path, str]:
    path = folder / "big.png"
    img = Image.new("L", (500, 300), 255)
    ImageDraw.Draw(img).text((200, 140), "big", fill=0)
    img.save(path)
    return path, f"is 500x300 = 150,000 pixels, above the limit of {LIMIT:,}"


@pytest.mark.parametrize("bad_file", [not_an_image, truncated_png, over_the_limit])
def test_page_refuses_a_bad_upload_in_one_line(page, limited_page: str, tmp_path: Path, bad_file):
    """Gradio never decodes an upload: our one-line refusal, naming the file, replaces the previous reading."""
    good = tmp_path / "A.png"
    text_image("A", size=80).save(good)
    assert upload(page, limited_page, good)  # a glyph checkpoint always reads some character
    page.locator("#upload-preview img").wait_for()  # the upload is shown back as read

    bad, because = bad_file(tmp_path)
    assert upload_again(page, bad) == ""
    assert_refused(page, bad.name, because)


def test_page_refuses_an_image_past_pillows_guard_with_our_limit(page, line_page: str, tmp_path: Path):
    """Above 179 MP Pillow's own DecompressionBombError used to answer first, inside Gradio."""
    good = tmp_path / "hello.png"
    text_image("hello world 42", size=40).save(good)
    assert upload(page, line_page, good)
    huge = tmp_path / "huge.png"
    huge.write_bytes(blank_png(20_000, 10_000))
    assert huge.stat().st_size < 100_000  # 200 MP in a small file: a decompression bomb
    assert 2 * Image.MAX_IMAGE_PIXELS < 20_000 * 10_000  # past Pillow's DecompressionBombError, not only its warning

    assert upload_again(page, huge) == ""
    assert_refused(page, "huge.png", f"is 20000x10000 = 200,000,000 pixels, above the limit of {DEFAULT_MAX_PIXELS:,}")
    page.get_by_text("whole line scaled to 28 px").click()  # another layout rereads the last image: there is none
    page.locator("#status").get_by_text(web.NOTHING_YET).wait_for()
    assert page.locator("#reading textarea").input_value() == ""


def ring(
    cx: float, cy: float, rx: float, ry: float, n: int, start: float = 0.0, end: float = 2 * math.pi
) -> list[tuple[float, float]]:
    """An ellipse (or an arc of one) as n straight segments, the way a mouse stroke approximates a curve."""
    return [
        (cx + rx * math.cos(start + (end - start) * k / n), cy + ry * math.sin(start + (end - start) * k / n))
        for k in range(n + 1)
    ]


# Lowercase strokes in a unit box (x right, y down; x-height from 0.42 to 1), drawn as a person would with the
# mouse: separate letters, straight segments between pointer positions.
ARCH = [(0.1, 0.62), (0.3, 0.44), (0.52, 0.44), (0.68, 0.56), (0.68, 1)]
STROKES = {
    "h": [[(0.1, 0), (0.1, 1)], ARCH],
    "e": [
        [
            (0.1, 0.7),
            (0.7, 0.7),
            (0.66, 0.52),
            (0.45, 0.42),
            (0.2, 0.47),
            (0.1, 0.7),
            (0.2, 0.93),
            (0.42, 1),
            (0.68, 0.93),
        ]
    ],
    "l": [[(0.3, 0), (0.3, 1)]],
    "o": [ring(0.4, 0.71, 0.3, 0.29, 8)],
}


def draw_text(tab, text: str) -> None:
    """Write `text` on the sketchpad with mouse strokes: letters 0.4 of the canvas high, a little apart."""
    canvas = tab.locator("#sketch canvas").first
    canvas.wait_for()
    tab.get_by_text("select the draw tool to start").wait_for(state="hidden")  # the page picks the brush itself
    box = canvas.bounding_box()
    height = 0.4 * box["height"]
    pitch = 0.85 * height
    x = box["x"] + box["width"] / 2 - pitch * len(text) / 2
    top = box["y"] + box["height"] / 2 - height / 2
    for char in text:
        for stroke in STROKES[char]:
            points = [(x + 0.8 * height * u, top + height * v) for u, v in stroke]
            tab.mouse.move(*points[0])
            tab.mouse.down()
            for point in points[1:]:  # the brush joins successive pointer positions with a straight line
                tab.mouse.move(*point)
            tab.mouse.up()
        x += pitch


def test_page_reads_a_line_drawn_with_the_mouse(page, line_page: str, recorder: Recorder, models: Path, tmp_path: Path):
    page.goto(line_page)
    before = len(recorder.calls)
    draw_text(page, "hello")
    # The page reads after strokes too (collapsing a burst of them into one later reading), so such a reading
    # can still arrive after the button's: wait until the page has been quiet for a while and shows the answer
    # of the last read_array call.
    page.locator("#read-drawing").click()
    line_model = (models / "line_cnn.pt").resolve()
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    seen_calls, quiet_since, match = -1, time.monotonic(), None
    while time.monotonic() < deadline:
        page.wait_for_timeout(500)
        if len(recorder.calls) != seen_calls:
            seen_calls, quiet_since = len(recorder.calls), time.monotonic()
            continue
        calls = [(gray, r) for path, gray, r in recorder.calls[before:] if path == line_model]
        if not calls or time.monotonic() - quiet_since < 3:
            continue
        text, shown = shown_reading(page), shown_model_input(page)
        gray, last = calls[-1]
        if last.text == text and np.array_equal(web.enlarge(last.model_input), shown):
            match = gray
            break
    assert match is not None, "the page does not show the answer of the last read_array call"
    assert glyph_cells(shown) == 5, "the model input does not show the 5 letters drawn"
    gray = match
    assert gray.shape == (web.LINE_CANVAS[1], web.LINE_CANVAS[0])  # the whole canvas, flattened to grayscale
    assert gray[0, 0] == 255 and gray.min() < 64  # white paper, dark ink
    assert text.strip(), page.locator("#status").inner_text()
    shot = tmp_path / "drawn_line.png"
    page.screenshot(path=str(shot), full_page=True)
    docs = os.environ.get("TEXT_RECOGNIZER_SCREENSHOT")
    if docs:
        Image.open(shot).convert("RGB").quantize(colors=64).save(docs, optimize=True)


def test_reader_reads_with_the_decoder_it_is_given(tmp_path: Path) -> None:
    """serve passes the reader checkpoint's pick (as predict reads); without one the page reads greedily."""
    checkpoint = tiny_checkpoint(tmp_path / "line_cnn.pt", "line")
    gray = np.asarray(text_image("hello world", size=30))
    loaded = load_model(checkpoint)
    assert web.Reader(checkpoint).read(gray)[0] == read_array(gray, loaded).text  # greedy by default
    calls: list[tuple[int, ...]] = []

    def spelled_hi(logits, lengths):
        calls.append(tuple(logits.shape))
        return [[loaded.mapping.index("h"), loaded.mapping.index("i")]] * logits.shape[0]

    assert web.Reader(checkpoint, decode=spelled_hi).read(gray)[0] == "hi" and len(calls) == 1


def test_serve_command_passes_the_readers_pick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from text_recognizer import cli

    served: dict[str, object] = {}
    monkeypatch.setattr(web, "serve", lambda **kwargs: served.update(kwargs))
    checkpoint = tiny_checkpoint(tmp_path / "line_cnn.pt", "line")
    assert cli.main(["serve", "--model", str(checkpoint), "--decoder", "greedy"]) == 0
    assert callable(served["decode"]) and served["model_path"] == checkpoint
    assert cli.main(["serve", "--model", str(checkpoint), "--decoder", "beam"]) == 1  # no record: refused, one line
