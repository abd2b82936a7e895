"""Odd input never crashes the readers: every path ends in a reading or in one line of error.

`text-recognizer predict PATH` and the web page's upload (`Reader.read_upload`) are given every
Pillow mode in each format that takes it (PNG, JPEG, GIF, BMP, TIFF, WebP), the same files cut
short at any byte or with bytes flipped, headers claiming billions of pixels, and paths that are
not image files (tests/odd_images.py writes them all). The CLI must return 0 and print one
non-empty line, or return non-zero and print exactly one line starting "error:", never raise, and
leave every file as it was. Output is captured at the file descriptors (capfd), so a line that a
C library writes to stderr itself counts too. Hypothesis draws the cases with a fixed seed
(derandomize, no example database), so CI runs the same ones each time.

Files nobody may read are checked in a forked child that has dropped to uid 65534, since root
(as in CI) reads through any chmod.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from text_recognizer.cli import main
from text_recognizer.metadata import CHAR_TO_LINE_INDEX, LINE_TOKENS
from text_recognizer.models.checkpoint import save_checkpoint
from text_recognizer.models.line_cnn import LineCNN
from text_recognizer.reading.predict import PredictError, load_image

try:
    from tests import odd_images
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    import odd_images

try:
    from text_recognizer import app as web  # imports gradio
except ModuleNotFoundError as err:
    if err.name is None or err.name.split(".")[0] != "gradio":
        raise
    web = None

try:
    from tests.tiny_nets import TINY_LINE_NET
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from tiny_nets import TINY_LINE_NET

REQUIRED = os.environ.get("CI", "").lower() == "true"
LINE_KWARGS = TINY_LINE_NET
NOBODY = 65534
# function_scoped_fixture: capfd is read out (and so emptied) before and after every example, on purpose.
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained LineCNN whose output bias leans to "x", so that an image it can read gives a non-empty line.

    (Untrained weights alone read nothing, and every good image would end in "the model read no
    characters": the success path would never be fuzzed.)
    """
    torch.manual_seed(0)
    net = LineCNN(**LINE_KWARGS)
    with torch.no_grad():
        net.classifier.bias[CHAR_TO_LINE_INDEX["x"]] += 4.0
    path = tmp_path_factory.mktemp("model") / "line_cnn.pt"
    save_checkpoint(path, kind="line", model_kwargs=LINE_KWARGS, state_dict=net.state_dict(), mapping=LINE_TOKENS)
    return path


@pytest.fixture(scope="module")
def cases_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cases")


# --- the cases ----------------------------------------------------------------------------------

flips = st.tuples(st.floats(0.0, 1.0), st.integers(1, 255))  # (where, 0..1 of the file; XOR mask)
damage = st.one_of(
    st.none(),
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0)),
    st.tuples(st.just("flip"), st.lists(flips, min_size=1, max_size=6)),
    st.tuples(st.just("flip_header"), st.lists(flips, min_size=1, max_size=3)),
)
image_cases = st.tuples(
    st.just("image"),
    st.sampled_from(odd_images.encodings()),
    st.integers(1, 160),  # width
    st.integers(1, 64),  # height
    st.integers(0, 2**16),  # seed of the picture's noise
    damage,
)
cases = st.one_of(
    image_cases,
    st.tuples(st.just("huge"), st.sampled_from(sorted(odd_images.HUGE))),
    st.tuples(st.just("special"), st.sampled_from(odd_images.SPECIALS)),
)


def write_case(folder: Path, case: tuple) -> Path:
    """The file (or other path) of a case drawn from `cases`, created in `folder`."""
    if case[0] == "huge":
        path = folder / f"huge{odd_images.FORMATS[case[1]]}"
        path.write_bytes(odd_images.HUGE[case[1]]())
        return path
    if case[0] == "special":
        return odd_images.write_special(folder, case[1], odd_images.encode("L", "PNG"))
    _, (mode, fmt), width, height, seed, harm = case
    data = odd_images.encode(mode, fmt, width, height, seed)
    if harm is not None and harm[0] == "truncate":
        data = odd_images.truncated(data, round(harm[1] * len(data)))
    elif harm is not None and harm[0] == "flip":
        data = odd_images.flipped(data, harm[1])
    elif harm is not None:  # the header, where a flip changes what the parser believes
        data = odd_images.flipped(data, [(where * min(1.0, 64 / len(data)), mask) for where, mask in harm[1]])
    path = folder / f"{mode.replace(';', '_')}{odd_images.FORMATS[fmt]}"
    path.write_bytes(data)
    return path


@contextlib.contextmanager
def case_folder(root: Path, case: tuple) -> Iterator[Path]:
    """A fresh folder holding the case's path (a FIFO guarded so that opening it cannot hang), removed after."""
    folder = Path(tempfile.mkdtemp(dir=root))
    try:
        path = write_case(folder, case)
        guard = odd_images.fifo_guard(path) if case == ("special", "fifo") else contextlib.nullcontext()
        with guard:
            yield path
    finally:
        shutil.rmtree(folder)


def user_visible(caught: list[warnings.WarningMessage]) -> list[str]:
    """Warnings a person at a terminal would see (Python hides deprecation warnings by default)."""
    hidden = (DeprecationWarning, PendingDeprecationWarning)
    return [f"{w.category.__name__}: {w.message}" for w in caught if not issubclass(w.category, hidden)]


def assert_one_outcome(code: int, out: str, err: str) -> None:
    """A reading (0, one non-empty line out, nothing on stderr) or a refusal (non-zero, one "error:" line)."""
    if code == 0:
        assert out.endswith("\n") and out.count("\n") == 1 and out.strip(), out
        assert err == "", err
    else:
        assert out == "", out
        assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err


def predict_in_process(path: Path, model: Path, capfd: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`text-recognizer predict PATH --model MODEL` in this process: (exit code, stdout, stderr); no warnings."""
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["predict", str(path), "--model", str(model)])
    out, err = capfd.readouterr()
    assert user_visible(caught) == [], (path.name, user_visible(caught))
    return code, out, err


# --- the command line ----------------------------------------------------------------------------


@FUZZ
@given(case=cases)
def test_predict_reads_or_refuses_in_one_line_and_changes_no_file(case, model, cases_root, capfd):
    with case_folder(cases_root, case) as path:
        before = odd_images.snapshot(path.parent, model.parent)
        code, out, err = predict_in_process(path, model, capfd)
        assert_one_outcome(code, out, err)
        assert odd_images.snapshot(path.parent, model.parent) == before
    event(outcome(code, err))  # pytest --hypothesis-show-statistics shows how often each outcome came up


def outcome(code: int, err: str) -> str:
    """A reading, or the kind of refusal: the error's text after the path, up to its first colon."""
    if code == 0:
        return "read"
    reason = err.split(".png", 1)[-1] if ".png" in err else err
    for ext in odd_images.FORMATS.values():
        reason = reason.split(ext, 1)[-1] if ext in reason else reason
    return reason.strip(" :").split(":")[0].split("(")[0].strip()[:60]


@pytest.mark.parametrize("mode_format", odd_images.encodings(), ids="-".join)
def test_every_mode_in_every_format_is_read(mode_format, model, cases_root, capfd):
    """An intact line picture is read in every mode and format Pillow writes (16-bit, float, CMYK, LAB, alpha...)."""
    with case_folder(cases_root, ("image", mode_format, 96, 32, 0, None)) as path:
        code, out, err = predict_in_process(path, model, capfd)
    assert_one_outcome(code, out, err)
    if mode_format in odd_images.BLANK_WRITES:  # Pillow wrote a white file; a later Pillow may not
        assert code == 0 or "the image is blank" in err, err
    elif mode_format in odd_images.BROKEN_WRITES:
        assert code == 0 or "is not a readable image" in err, err
    else:
        assert code == 0, err


SPECIAL_OUTCOMES = {  # kind: what the one line of error says about the path, or None for a reading
    "empty": "empty.png is empty (0 bytes)",
    "text": "notes.jpg is not a readable image (PNG, JPEG, ...): no image format recognised",
    "html": "page.png is not a readable image",
    "symlink": None,
    "dangling": "gone.png not found: it is a symbolic link to a missing file",
    "loop": "loop.png: Too many levels of symbolic links",
    "directory": "folder.png is a directory, not an image file",
    "symlink_to_directory": "sub.png is a directory, not an image file",
    "fifo": "pipe.png is a FIFO, not an image file",
    "through_a_file": "inner.png not found",
    "missing": "nope.png not found",
    "newline_name": None,
}


@pytest.mark.parametrize("kind", odd_images.SPECIALS)
def test_each_odd_path_gets_its_own_error(kind, model, cases_root, capfd):
    with case_folder(cases_root, ("special", kind)) as path:
        before = odd_images.snapshot(path.parent)
        code, out, err = predict_in_process(path, model, capfd)
        assert odd_images.snapshot(path.parent) == before
    assert_one_outcome(code, out, err)
    expected = SPECIAL_OUTCOMES[kind]
    if expected is None:
        assert code == 0, err
    else:
        assert code == 1 and expected in err, err


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="no /dev/null here")
def test_a_device_is_not_an_image_file(model, capfd):
    code, out, err = predict_in_process(Path("/dev/null"), model, capfd)
    assert code == 1 and out == "" and err == "error: /dev/null is a character device, not an image file\n"


@pytest.mark.parametrize("fmt", sorted(odd_images.HUGE))
def test_headers_claiming_billions_of_pixels_are_refused_before_decoding(fmt, model, cases_root, capfd):
    with case_folder(cases_root, ("huge", fmt)) as path:
        code, _, err = predict_in_process(path, model, capfd)
    assert code == 1 and "pixels, above the limit of 40,000,000 (raise it with --max-pixels" in err, err
    assert err.count("\n") == 1


def test_a_control_character_in_a_name_stays_one_line(tmp_path):
    bad = tmp_path / "two\nlines.png"
    bad.write_text("text")
    with pytest.raises(PredictError) as info:
        load_image(bad)
    assert "\n" not in str(info.value) and "two\\nlines.png is not a readable image" in str(info.value)


# --- files nobody may read: as root (CI) chmod does not stop a read, so the reader runs as nobody -----


def predict_as_nobody(argv: list[str]) -> tuple[int, str, str]:
    """`main(argv)` in a forked child that has dropped to uid/gid 65534 (nobody): (exit code, stdout, stderr).

    Forked rather than a fresh interpreter: the child needs no access to Python's own files (a
    venv whose interpreter lives under /root is closed to nobody), only to the paths under test.
    The child runs only the path checks of load_image, which `predict` does before it loads a model.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 70
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(argv)
            os.write(write_end, json.dumps([code, out.getvalue(), err.getvalue()]).encode())
            status = 0
        except BaseException as exc:  # reported to the parent, which fails the test with it
            with contextlib.suppress(OSError):
                os.write(write_end, json.dumps(["raised", repr(exc), ""]).encode())
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    code, out, err = json.loads(data)
    assert code != "raised", out
    return code, out, err


@pytest.mark.skipif(not hasattr(os, "fork") or not hasattr(os, "geteuid"), reason="POSIX processes and permissions")
def test_unreadable_files_and_folders_say_permission_denied(model, tmp_path):
    load_image(write_case(tmp_path, ("special", "symlink")))  # Pillow's plugins imported before any fork
    root = Path(tempfile.mkdtemp(prefix="text-recognizer-perm-"))  # not under pytest's folder, closed to others
    try:
        root.chmod(0o755)
        good = odd_images.encode("L", "PNG")
        (root / "locked.png").write_bytes(good)
        (root / "locked.png").chmod(0o000)
        (root / "closed").mkdir()
        (root / "closed" / "inside.png").write_bytes(good)
        (root / "closed").chmod(0o000)
        (root / "open.png").write_bytes(good)
        (root / "open.png").chmod(0o644)
        run = predict_as_nobody if os.geteuid() == 0 else predict_in_process_plain
        model_arg = ["--model", str(model)]
        before = odd_images.snapshot(root)
        expected = {
            root / "locked.png": f"error: cannot read {root / 'locked.png'}: permission denied\n",
            root / "closed" / "inside.png": (
                f"error: cannot read {root / 'closed' / 'inside.png'}: permission denied (on a folder on its path)\n"
            ),
        }
        for path, message in expected.items():
            assert run(["predict", str(path), *model_arg]) == (1, "", message)
        # the control: the same bytes with read permission get past the path checks (to the model, or its absence)
        code, _, err = run(["predict", str(root / "open.png"), "--model", str(root / "no-model.pt")])
        assert code == 1 and "no-model.pt" in err and "open.png" not in err, err
        assert odd_images.snapshot(root) == before
    finally:
        (root / "closed").chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)


def predict_in_process_plain(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


# --- the web page's upload -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def reader(model: Path):
    if web is None:
        if REQUIRED:
            pytest.fail("gradio is not installed (pip install -e '.[app]'); CI must run the upload fuzz", pytrace=False)
        pytest.skip("gradio is not installed (pip install -e '.[app]')")
    return web.Reader(model)


@settings(FUZZ, max_examples=100)
@given(case=cases)
def test_upload_reads_or_refuses_in_one_status_line(case, reader, cases_root):
    with case_folder(cases_root, case) as path:
        before = odd_images.snapshot(path.parent)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # gr.Warning outside a request: the page's toast
            outputs = reader.read_upload(str(path))
        assert odd_images.snapshot(path.parent) == before
    assert isinstance(outputs, tuple) and len(outputs) >= 5, outputs
    text, status = outputs[0], outputs[3]
    assert isinstance(text, str) and isinstance(status, str) and status and "\n" not in status, status
    if status.startswith("**Cannot read this image:**"):
        assert text == "" and outputs[1] is None


def test_upload_of_each_odd_path(reader, cases_root):
    for kind in odd_images.SPECIALS:
        with case_folder(cases_root, ("special", kind)) as path, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            status = reader.read_upload(str(path))[3]
        expected = SPECIAL_OUTCOMES[kind]
        assert "\n" not in status, status
        if expected is None:
            assert not status.startswith("**Cannot read"), (kind, status)
        else:
            assert status.startswith("**Cannot read this image:**"), (kind, status)
