"""course.data: IDX parsing, checksums, and errors that say what to do."""

import gzip
import hashlib
import shutil
import struct
import zipfile

import numpy as np
import pytest

from course import data

pytestmark = pytest.mark.unit


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_parse_idx_roundtrips_uint8_and_int32():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(data.parse_idx(idx_bytes(images)), images)
    ints = np.array([[-5, 7], [1 << 20, 0]], dtype=np.int32)
    parsed = data.parse_idx(idx_bytes(ints, 0x0C))
    assert parsed.dtype == np.int32 and np.array_equal(parsed, ints)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x01\x00\x08\x01", "two zero bytes"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "type code"),
        (b"\x00\x00\x08\x02\x00\x00", "truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "promises shape"),
    ],
)
def test_parse_idx_rejects_malformed_input(raw, message):
    with pytest.raises(data.DatasetError, match=message):
        data.parse_idx(raw, "bad.idx")


@pytest.fixture()
def tiny_store(tmp_path):
    """A datasets folder with one gzipped IDX file and its manifest."""
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    payload = gzip.compress(idx_bytes(labels), mtime=0)
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "labels.gz").write_bytes(payload)
    manifest = tmp_path / "MANIFEST.tsv"
    manifest.write_text(
        "path\tbytes\tsha256\tmd5\turl\tarchive_member\tsource\tlicense\n"
        f"toy/labels.gz\t{len(payload)}\t{hashlib.sha256(payload).hexdigest()}\t-\t"
        f"{(tmp_path / 'upstream.zip').as_uri()}\tinner.zip::labels.gz\ttest\tCC0\n"
    )
    data.read_manifest.cache_clear()
    yield tmp_path, manifest, labels, payload
    data.read_manifest.cache_clear()


def test_verify_accepts_the_committed_bytes(tiny_store):
    root, manifest, _, _ = tiny_store
    assert data.verify("toy/labels.gz", root, manifest) == root / "toy" / "labels.gz"


def test_missing_file_error_names_the_file_and_the_fix(tiny_store):
    root, manifest, _, _ = tiny_store
    (root / "toy" / "labels.gz").unlink()
    with pytest.raises(data.DatasetError, match=r"missing.*git checkout -- datasets/toy/labels.gz"):
        data.verify("toy/labels.gz", root, manifest)


def test_corrupt_file_is_refused_even_at_the_same_size(tiny_store):
    root, manifest, _, payload = tiny_store
    flipped = bytearray(payload)
    flipped[-1] ^= 0xFF
    (root / "toy" / "labels.gz").write_bytes(bytes(flipped))
    with pytest.raises(data.DatasetError, match="corrupt: sha256"):
        data.verify("toy/labels.gz", root, manifest)


def test_truncated_file_is_reported_by_size(tiny_store):
    root, manifest, _, payload = tiny_store
    (root / "toy" / "labels.gz").write_bytes(payload[:-3])
    with pytest.raises(data.DatasetError, match="truncated"):
        data.verify("toy/labels.gz", root, manifest)


def test_unknown_path_lists_the_known_ones(tiny_store):
    root, manifest, _, _ = tiny_store
    with pytest.raises(data.DatasetError, match="toy/labels.gz"):
        data.verify("toy/nope.gz", root, manifest)


def test_fetch_unpacks_nested_archives_and_verifies(tiny_store):
    """fetch() reads a file:// URL here: the same code path as upstream, no network."""
    root, manifest, labels, payload = tiny_store
    inner = root / "inner.zip"
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("labels.gz", payload)
    with zipfile.ZipFile(root / "upstream.zip", "w") as zf:
        zf.write(inner, "inner.zip")
    shutil.rmtree(root / "toy")
    path = data.fetch("toy/labels.gz", root, manifest)
    assert np.array_equal(data.parse_idx(gzip.decompress(path.read_bytes())), labels)


def test_fetch_keeps_the_old_copy_when_upstream_changed(tiny_store):
    root, manifest, _, payload = tiny_store
    with zipfile.ZipFile(root / "inner.zip", "w") as zf:
        zf.writestr("labels.gz", b"something else")
    with zipfile.ZipFile(root / "upstream.zip", "w") as zf:
        zf.write(root / "inner.zip", "inner.zip")
    with pytest.raises(data.DatasetError, match="does not match"):
        data.fetch("toy/labels.gz", root, manifest)
    assert (root / "toy" / "labels.gz").read_bytes() == payload
