"""Datasets on disk, verified by checksum before use.

Every file a lab reads is listed in `datasets/MANIFEST.tsv` with its size, sha256,
provenance and license. Loaders verify the sha256 before parsing so that a
truncated copy or a stray edit fails loudly, with the file's name and the way to
restore it, instead of producing a model that is quietly wrong.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import shutil
import struct
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from course.paths import DATASETS, MANIFEST

RESTORE_HINT = (
    "Restore it with `git checkout -- datasets/{path}` (the file is committed), "
    "or download a fresh copy with `course data fetch {path}`."
)


class DatasetError(RuntimeError):
    """A data file is missing, corrupt or unparseable; the message says what to do."""


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    bytes: int
    sha256: str
    url: str
    archive_member: str
    source: str
    license: str


@lru_cache(maxsize=4)
def read_manifest(manifest: Path = MANIFEST) -> dict[str, ManifestEntry]:
    """Map each relative path to its manifest row."""
    if not manifest.exists():
        raise DatasetError(
            f"The dataset manifest {manifest} is missing. Restore it with `git checkout -- {manifest.name}`."
        )
    with manifest.open(newline="") as fh:
        rows = csv.DictReader(fh, delimiter="\t")
        return {
            r["path"]: ManifestEntry(
                path=r["path"],
                bytes=int(r["bytes"]),
                sha256=r["sha256"],
                url=r["url"],
                archive_member=r["archive_member"],
                source=r["source"],
                license=r["license"],
            )
            for r in rows
        }


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify(rel_path: str, root: Path = DATASETS, manifest: Path = MANIFEST) -> Path:
    """Return the absolute path of a dataset file once its sha256 matches the manifest."""
    entries = read_manifest(manifest)
    if rel_path not in entries:
        raise DatasetError(f"{rel_path} is not in {manifest}; known files: {', '.join(sorted(entries))}.")
    entry = entries[rel_path]
    path = root / rel_path
    hint = RESTORE_HINT.format(path=rel_path)
    if not path.exists():
        raise DatasetError(f"Dataset file {path} is missing. {hint}")
    size = path.stat().st_size
    if size != entry.bytes:
        raise DatasetError(
            f"Dataset file {path} has {size} bytes, the manifest expects {entry.bytes}: "
            f"it is truncated or was replaced. {hint}"
        )
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise DatasetError(
            f"Dataset file {path} is corrupt: sha256 {actual[:12]}... but the manifest expects "
            f"{entry.sha256[:12]}.... {hint}"
        )
    return path


def check_all(root: Path = DATASETS, manifest: Path = MANIFEST) -> dict[str, str | None]:
    """Verify every manifest entry; map each path to None (fine) or the problem."""
    result: dict[str, str | None] = {}
    for rel in read_manifest(manifest):
        try:
            verify(rel, root, manifest)
            result[rel] = None
        except DatasetError as exc:
            result[rel] = str(exc)
    return result


# IDX is MNIST's format (http://yann.lecun.com/exdb/mnist/): a big-endian header of
# two zero bytes, a dtype code, the number of dimensions, one uint32 per dimension,
# then the raw array. torchvision would parse it for us but has no CPU wheel here,
# and the format is small enough to read in a dozen lines.
_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse an (uncompressed) IDX byte string into a numpy array."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{name} is not an IDX file: it should start with two zero bytes.")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise DatasetError(f"{name} has unknown IDX type code 0x{code:02x}.")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{name} is truncated inside its IDX header.")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetError(
            f"{name}: IDX header promises shape {shape} ({expected} bytes) but {len(raw) - header} bytes follow."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(rel_path: str, root: Path = DATASETS) -> np.ndarray:
    """Verify, decompress (if .gz) and parse one IDX file from the datasets folder."""
    path = verify(rel_path, root)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return parse_idx(raw, rel_path)


def load_mnist(split: str = "train", name: str = "mnist", root: Path = DATASETS) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of MNIST or Fashion-MNIST."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(f"{name}/{prefix}-images-idx3-ubyte.gz", root)
    labels = read_idx(f"{name}/{prefix}-labels-idx1-ubyte.gz", root).astype(np.int64)
    if len(images) != len(labels):
        raise DatasetError(f"{name} {split}: {len(images)} images but {len(labels)} labels.")
    return images, labels


def fetch(rel_path: str, root: Path = DATASETS, manifest: Path = MANIFEST) -> Path:
    """Download a fresh copy of one file from its upstream URL and verify it.

    The labs never call this (they run offline on the committed files); it is for a
    learner who wants to rebuild `datasets/` from the original sources. A URL may
    point to an archive; `archive_member` then names the file inside it, with `::`
    separating nested zip files.
    """
    entry = read_manifest(manifest)[rel_path]
    if not entry.url:
        raise DatasetError(
            f"{rel_path} was written for this course and has no upstream copy: "
            f"restore it with `git checkout -- datasets/{rel_path}`."
        )
    with urllib.request.urlopen(entry.url, timeout=60) as resp:  # noqa: S310 (URLs come from our manifest)
        payload = resp.read()
    for member in filter(None, entry.archive_member.split("::")):
        with zipfile.ZipFile(io.BytesIO(payload)) as zf:
            payload = zf.read(member)
    target = root / rel_path
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(payload)
    tmp_path = Path(tmp.name)
    if hashlib.sha256(payload).hexdigest() != entry.sha256:
        tmp_path.unlink()
        raise DatasetError(
            f"The download of {rel_path} from {entry.url} does not match the manifest's sha256; "
            "the upstream file changed. The committed copy is kept."
        )
    shutil.move(tmp_path, target)
    return target


# --- tabular and text sets ---------------------------------------------------------


def load_bank_marketing(full: bool = True, root: Path = DATASETS):
    """UCI Bank Marketing (Moro et al. 2014) as a DataFrame, rows in their original time order.

    `full=True` is bank-additional-full.csv (41,188 rows, May 2008 to Nov 2010); the
    smaller file is a 10% sample. The target column is `y` ("yes"/"no"). Note the
    `duration` column: it is only known after the call, so a model that uses it leaks.
    """
    import pandas as pd

    name = "bank-additional-full.csv" if full else "bank-additional.csv"
    return pd.read_csv(verify(f"bank-marketing/{name}", root), sep=";")


def load_banking77(split: str = "train", root: Path = DATASETS):
    """BANKING77 (Casanueva et al. 2020): columns `text` and `category` (77 intents)."""
    import pandas as pd

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    return pd.read_csv(verify(f"banking77/{split}.csv", root))


def banking77_categories(root: Path = DATASETS) -> list[str]:
    import json

    return json.loads(verify("banking77/categories.json", root).read_text())


def load_sms_spam(root: Path = DATASETS):
    """SMS Spam Collection (Almeida & Gomez Hidalgo 2011): columns `label` (ham/spam) and `text`."""
    import pandas as pd

    path = verify("sms-spam/SMSSpamCollection", root)
    rows = [line.split("\t", 1) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = [i for i, row in enumerate(rows, 1) if len(row) != 2 or row[0] not in ("ham", "spam")]
    if bad:
        raise DatasetError(
            f"{path}: line {bad[0]} is not '<ham|spam><TAB><text>'. "
            + RESTORE_HINT.format(path="sms-spam/SMSSpamCollection")
        )
    return pd.DataFrame(rows, columns=["label", "text"])
