"""Stage download_brown: NLTK's Brown corpus zip, verified, to OUT_PATH.

usage: python stages/download_brown.py OUT_PATH
"""

from __future__ import annotations

from pathlib import Path

from common import run, section

from text_recognizer.data.sources import default_cache_dir, fetch_brown, synthesize_brown
from text_recognizer.params import DataParams, DownloadBrownParams


def main(argv: list[str]) -> None:
    (out_path,) = argv
    data = section(DataParams, "data")
    params = section(DownloadBrownParams, "download_brown")
    if data.source != "nist":  # synthetic and handwriting: a generated corpus (only glyphs are real there)
        path = synthesize_brown(Path(out_path), seed=data.synthetic_seed)
    else:
        path = fetch_brown(
            Path(out_path),
            mirrors=params.mirrors,
            sha256=params.sha256,
            cache_dir=default_cache_dir(),
            timeout_s=params.timeout_s,
            retries=params.retries,
        )
    print(f"{path}  {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    run(main)
