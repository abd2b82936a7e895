"""Where the raw inputs come from: the real archives, or the offline look-alikes.

Both sources end in the same files (`data/raw/emnist/*.gz`, `data/raw/brown.zip`), so every
stage downstream reads real and synthetic inputs through the same code.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from text_recognizer.data.download import ChecksumError, extract_members, fetch, file_digest
from text_recognizer.errors import ParamError
from text_recognizer.io import atomic_path
from text_recognizer.metadata import ALL_EMNIST_MEMBERS, EMNIST_SPLITS, LINES_SPLIT, split_members

log = logging.getLogger(__name__)

# params.yaml's download_emnist.sha256 is {split: {key: sha256}}, key as below, for the splits whose members have a
# published sha256 (shared/datasets/PROVENANCE.md: byclass, balanced, letters); the archive's md5 vouches for the
# rest. No key has a dot, so `dvc exp run -S download_emnist.sha256.balanced.train_images=...` can set one.
EMNIST_SHA256_KEYS: tuple[str, ...] = ("train_images", "train_labels", "test_images", "test_labels")  # split_members'


def pinned_member(split: str, key: str) -> str:
    """The archive member that download_emnist.sha256.<split>.<key> pins."""
    return split_members(split)[EMNIST_SHA256_KEYS.index(key)]


OFFLINE_HINT = 'No network? `make offline` runs the pipeline on generated look-alike data (see README, "Offline").'

EMNIST_HINT = f"""\
To use the real data on a machine that cannot reach NIST, pre-stage the archive: download gzip.zip (535 MB,
md5 58c8d27c78d21e728a6bc7b3cc06412e) by any means and put it at {{cache}}, or add its location as the first mirror:
  dvc exp run -S 'download_emnist.mirrors=[file:///path/to/gzip.zip]'
{OFFLINE_HINT}"""

BROWN_HINT = f"""\
To use the real corpus without a network, put NLTK's brown.zip at {{cache}} or in an NLTK data folder
(corpora/brown.zip under $NLTK_DATA or ~/nltk_data).
{OFFLINE_HINT}"""


def emnist_member_hashes(sha256: Mapping[str, Mapping[str, str]]) -> dict[str, str | None]:
    """{archive member: expected sha256, or None where only the archive's md5 vouches for it}, for every member.

    An unknown split or key (e.g. the flat keys of old params) or a pinned split lacking a key is an error naming
    what is expected, rather than a member silently extracted unverified. ByClass must be pinned: the lines read it
    whatever emnist_hdf5.split is, and its hashes are published.
    """
    problems = [f"has unknown split {split}" for split in sha256 if split not in EMNIST_SPLITS]
    if LINES_SPLIT not in sha256:
        problems.append(f"lacks {LINES_SPLIT}")
    for split, keys in sha256.items():
        if split not in EMNIST_SPLITS:
            continue
        missing = [key for key in EMNIST_SHA256_KEYS if key not in keys]
        unknown = [key for key in keys if key not in EMNIST_SHA256_KEYS]
        problems += [
            f"{split} {what} {', '.join(found)}"
            for what, found in (("lacks", missing), ("has unknown", unknown))
            if found
        ]
    if problems:
        raise ParamError(
            f"download_emnist.sha256 {'; '.join(problems)}; expected splits among {', '.join(EMNIST_SPLITS)} "
            f"({LINES_SPLIT} among them), each with the keys {', '.join(EMNIST_SHA256_KEYS)}"
        )
    hashes: dict[str, str | None] = dict.fromkeys(ALL_EMNIST_MEMBERS)
    for split, keys in sha256.items():
        hashes.update({pinned_member(split, key): digest for key, digest in keys.items()})
    return hashes


def fetch_emnist(
    out_dir: Path,
    *,
    mirrors: Sequence[str],
    archive_md5: str,
    sha256: Mapping[str, Mapping[str, str]],
    cache_dir: Path,
    timeout_s: float,
    retries: int,
) -> list[Path]:
    """Download (or reuse) NIST's gzip.zip and keep every split's members, each pinned one verified by its sha256:
    the split is emnist_hdf5's choice, so this stage need not rerun when it changes (docs/decisions.md)."""
    members = emnist_member_hashes(sha256)
    archive = cache_dir / "gzip.zip"
    fetch(
        mirrors,
        archive,
        md5=archive_md5,
        timeout_s=timeout_s,
        retries=retries,
        hint=EMNIST_HINT.format(cache=archive),
    )
    try:
        return _extract_atomically(archive, members, out_dir)
    except ChecksumError as e:  # name the key to change if NIST republishes the archive
        key = next(
            (f"{split}.{k}" for split in sha256 for k in sha256[split] if pinned_member(split, k) == e.path), "?"
        )
        message = f"{e}\n(pinned by download_emnist.sha256.{key} in params.yaml)"
        raise ChecksumError(message, path=e.path, expected=e.expected, actual=e.actual) from e


def synthesize_emnist(
    out_dir: Path,
    *,
    train_per_class: int,
    test_per_class: int,
    seed: int,
    pen_share: float,
    real: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[Path]:
    """Write a generated archive in NIST's layout, then unpack it exactly as the real one.

    `real` glyphs (the handwriting source's, per file) are blended in beside the generated ones.
    """
    from text_recognizer.data.synthetic import write_emnist_archive

    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "gzip.zip"
        digests = write_emnist_archive(
            archive,
            train_per_class=train_per_class,
            test_per_class=test_per_class,
            seed=seed,
            pen_share=pen_share,
            extra=real,
        )
        members = {m: digests["sha256"][Path(m).name] for m in ALL_EMNIST_MEMBERS}
        return _extract_atomically(archive, members, out_dir)


def blend_handwriting(
    out_dir: Path,
    *,
    sha256: Mapping[str, str],
    package_index: str,
    train_per_class: int,
    test_per_class: int,
    seed: int,
    pen_share: float,
    cache_dir: Path,
    timeout_s: float,
    retries: int,
) -> list[Path]:
    """The generated archive with the real handwritten digits and letters blended in (README, "Real handwriting")."""
    from text_recognizer.data.handwriting import fetch_real_glyphs, pip_index_url

    index_url = pip_index_url() if package_index == "pip" else package_index
    real = fetch_real_glyphs(
        sha256, index_url=index_url, cache_dir=cache_dir, timeout_s=timeout_s, retries=retries, seed=seed
    )
    return synthesize_emnist(
        out_dir,
        train_per_class=train_per_class,
        test_per_class=test_per_class,
        seed=seed,
        pen_share=pen_share,
        real=real,
    )


def _extract_atomically(archive: Path, members: Mapping[str, str | None], out_dir: Path) -> list[Path]:
    with atomic_path(out_dir, replace_dir=True) as tmp:  # the download stage's declared output
        tmp.mkdir()
        paths = extract_members(archive, members, tmp)
        names = [p.name for p in paths]
    return [out_dir / name for name in names]


def nltk_data_dirs() -> list[Path]:
    """NLTK's own search path ($NLTK_DATA, ~/nltk_data, /usr/share/nltk_data, ...), without downloading."""
    import nltk

    return [Path(p) for p in nltk.data.path]


def find_verified(candidates: Iterable[Path], sha256: str) -> Path | None:
    """The first existing candidate whose sha256 matches; mismatching copies are reported and skipped."""
    for path in candidates:
        if path.is_file():
            actual = file_digest(path, "sha256")
            if actual == sha256:
                return path
            log.warning("ignoring %s: sha256 %s, expected %s", path, actual, sha256)
    return None


def fetch_brown(
    out_path: Path,
    *,
    mirrors: Sequence[str],
    sha256: str,
    cache_dir: Path,
    timeout_s: float,
    retries: int,
) -> Path:
    """Use a verified brown.zip from an NLTK data folder if there is one, else download it."""
    local = find_verified((d / "corpora" / "brown.zip" for d in nltk_data_dirs()), sha256)
    if local is not None:
        log.info("using %s (sha256 verified), no download", local)
        source = local
    else:
        source = cache_dir / "brown.zip"
        fetch(
            mirrors, source, sha256=sha256, timeout_s=timeout_s, retries=retries, hint=BROWN_HINT.format(cache=source)
        )
    with atomic_path(out_path, suffix=".zip") as tmp:
        shutil.copyfile(source, tmp)
        if file_digest(tmp, "sha256") != sha256:
            raise ChecksumError(f"{out_path}: copy of {source} does not match sha256 {sha256}")
    return out_path


def synthesize_brown(out_path: Path, *, seed: int) -> Path:
    from text_recognizer.data.synthetic import write_brown_corpus

    with atomic_path(out_path, suffix=".zip") as tmp:
        write_brown_corpus(tmp, seed=seed)
    return out_path


def default_cache_dir() -> Path:
    """Downloads are kept outside DVC's outputs so that a partial download survives for resuming."""
    return Path(os.environ.get("TEXT_RECOGNIZER_DOWNLOADS", "data/downloads"))
