"""course.serving.artifacts: content addressing, verification on load, schema checks, parity and model cards."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from course.serving import artifacts
from course.serving.artifacts import ArtifactError

pytestmark = pytest.mark.unit

IMAGES = artifacts.tensor_schema("images", "float32", ["batch", 1, 28, 28])
PROBS = artifacts.tensor_schema("probs", "float32", ["batch", 10])
CARD = {
    "name": "tiny",
    "intended_use": "unit tests",
    "data": "none",
    "metrics": {"accuracy": 0.5},
    "limitations": ["not a model"],
}


@pytest.fixture
def saved(tmp_path):
    data = b"\x08ONNX-ish bytes\x00" * 50
    ref = artifacts.save_artifact(
        data, tmp_path / "store", kind="onnx", metadata={"card": CARD, "input_schema": [IMAGES]}
    )
    return data, ref


def test_name_is_the_sha256_of_the_content_and_the_sidecar_says_so(saved):
    data, ref = saved
    digest = hashlib.sha256(data).hexdigest()
    assert ref.sha256 == digest and ref.path.name == f"{digest}.onnx" and ref.kind == "onnx"
    assert ref.path.read_bytes() == data
    sidecar = json.loads(ref.sidecar.read_text())
    assert ref.sidecar.name == f"{digest}.json"
    assert sidecar["sha256"] == digest and sidecar["kind"] == "onnx" and sidecar["size_bytes"] == len(data)
    assert sidecar["metadata"]["card"] == CARD and sidecar["metadata"]["input_schema"] == [IMAGES]
    assert sidecar["versions"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert sidecar["versions"]["numpy"] == np.__version__
    assert {"at", "by", "python"} <= set(sidecar["created"])


def test_same_bytes_same_name_different_bytes_different_name(tmp_path, saved):
    data, ref = saved
    again = artifacts.save_artifact(data, ref.path.parent, kind="onnx")
    other = artifacts.save_artifact(data + b"!", ref.path.parent, kind="onnx")
    assert again.path == ref.path and other.path != ref.path
    from_file = tmp_path / "model.onnx"
    from_file.write_bytes(data)
    assert artifacts.save_artifact(from_file, tmp_path / "other-store", kind="onnx").sha256 == ref.sha256
    assert sorted(p.suffix for p in ref.path.parent.iterdir()) == [".json", ".json", ".onnx", ".onnx"]


def test_load_returns_verified_bytes_and_metadata(saved):
    data, ref = saved
    loaded = artifacts.load_artifact(ref, expected_sha256=ref.sha256, expected_kind="onnx", expected_input=IMAGES)
    assert loaded.data == data and loaded.metadata["card"]["name"] == "tiny"
    assert artifacts.load_artifact(str(ref.path)).ref == ref
    assert artifacts.find(ref.path.parent, ref.sha256) == ref


def test_one_corrupted_byte_is_refused_with_a_clear_error(saved):
    data, ref = saved
    corrupted = bytearray(data)
    corrupted[100] ^= 0x01
    ref.path.write_bytes(bytes(corrupted))
    with pytest.raises(ArtifactError) as err:
        artifacts.load_artifact(ref)
    message = str(err.value)
    assert ref.path.name in message and "corrupted" in message
    assert ref.sha256 in message and hashlib.sha256(bytes(corrupted)).hexdigest() in message
    assert "save the artifact again" in message.lower()
    artifacts.save_artifact(data, ref.path.parent, kind="onnx")  # saving again repairs it
    assert artifacts.load_artifact(ref).data == data


def test_truncated_file_is_refused(saved):
    data, ref = saved
    ref.path.write_bytes(data[:-1])
    with pytest.raises(ArtifactError, match="corrupted"):
        artifacts.load_artifact(ref.path)


def test_wrong_expected_hash_is_refused(saved):
    _, ref = saved
    wrong = hashlib.sha256(b"another model").hexdigest()
    with pytest.raises(ArtifactError) as err:
        artifacts.load_artifact(ref.path, expected_sha256=wrong)
    assert wrong in str(err.value) and ref.sha256 in str(err.value) and "different model" in str(err.value)
    with pytest.raises(ArtifactError, match="not a sha256"):
        artifacts.load_artifact(ref.path, expected_sha256=ref.sha256[:12])


def test_mismatched_input_schema_is_refused_with_the_differing_field(saved):
    _, ref = saved
    flat = artifacts.tensor_schema("images", "float32", ["batch", 784])
    with pytest.raises(ArtifactError) as err:
        artifacts.load_artifact(ref, expected_input=flat)
    message = str(err.value)
    assert "input schema mismatch" in message and "shape" in message and "784" in message
    assert "dtype" not in message  # only the field that differs is blamed
    with pytest.raises(ArtifactError, match="dtype"):
        artifacts.load_artifact(ref, expected_input=artifacts.tensor_schema("images", "uint8", IMAGES["shape"]))
    with pytest.raises(ArtifactError, match="expected a 'state_dict' artifact"):
        artifacts.load_artifact(ref, expected_kind="state_dict")


def test_file_not_named_by_hash_and_missing_sidecar_are_refused(tmp_path, saved):
    data, ref = saved
    plain = tmp_path / "model.onnx"
    plain.write_bytes(data)
    with pytest.raises(ArtifactError, match="not a sha256"):
        artifacts.load_artifact(plain)
    ref.sidecar.unlink()
    with pytest.raises(ArtifactError, match="sidecar"):
        artifacts.load_artifact(ref)
    with pytest.raises(ArtifactError, match="no such artifact"):
        artifacts.load_artifact(tmp_path / ("0" * 64 + ".onnx"))


def test_metadata_must_be_json(tmp_path):
    with pytest.raises(ArtifactError, match="not plain JSON"):
        artifacts.save_artifact(b"x", tmp_path, kind="onnx", metadata={"accuracy": torch.tensor(0.9)})


def test_max_abs_diff_is_float64_and_refuses_broadcasting():
    a = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    b = torch.tensor([[1.0, 2.5], [3.0, 3.0]])
    assert artifacts.max_abs_diff(a, b) == 1.0
    assert artifacts.max_abs_diff(a, a) == 0.0
    assert artifacts.max_abs_diff(np.float32(1.0) + np.zeros(3, np.float32), np.full(3, 1.0 + 1e-7)) > 0
    with pytest.raises(ValueError, match="shape"):
        artifacts.max_abs_diff(a, a[:1])
    assert np.isnan(artifacts.max_abs_diff(a, np.array([[1.0, np.nan], [3.0, 4.0]])))


def test_model_card_has_every_section_and_refuses_holes(saved):
    _, ref = saved
    text = artifacts.card_of(artifacts.load_artifact(ref))
    for heading in ("# Model card: tiny", "## Intended use", "## Data", "## Metrics", "## Limitations"):
        assert heading in text
    assert "| accuracy | 0.5 |" in text and "- not a model" in text and ref.sha256 in text
    assert "`images`: float32 ['batch', 1, 28, 28]" in text
    with pytest.raises(ValueError, match="limitations"):
        artifacts.model_card({**CARD, "limitations": ""})
    with pytest.raises(ValueError, match="metrics"):
        artifacts.model_card({**CARD, "metrics": 0.5})
