"""Content-addressed model artifacts: files named by the sha256 of their bytes, with a JSON sidecar.

A file called `model.onnx` says nothing about which model it holds: the next export
overwrites it, a truncated copy looks like a good one, and a service that loads it
cannot tell whether it got the model its configuration meant. Naming the file by
the sha256 of its content turns the name into a checksum. The same bytes always get
the same name (saving twice is harmless), different bytes never share one, and a
reader recomputes the hash before it trusts a byte. The sidecar
`<store>/<sha256>.json` carries what the bytes cannot say: the kind of file, who
made it with which library versions, the input and output schema and the model card.

Lab 07 builds artifacts with this module; the serving labs (08, 12) load them with
`load_artifact`, which refuses a corrupted file, a different artifact than the one
pinned, or one exported for other inputs, each with an error that says what to do.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import platform
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "mle-course-artifact/1"
EXTENSIONS = {"onnx": "onnx", "state_dict": "pt", "exported_program": "pt2", "torchscript": "pt"}
CARD_FIELDS = ("name", "intended_use", "data", "metrics", "limitations")
VERSIONED = ("torch", "onnx", "onnxruntime", "onnxscript", "numpy")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ArtifactError(Exception):
    """An artifact that must not be used: corrupted, not the one expected, or made for other inputs."""


@dataclass(frozen=True)
class ArtifactRef:
    """Where an artifact lives and what its bytes hash to; the name of the file is the hash."""

    path: Path
    sha256: str
    kind: str

    @property
    def sidecar(self) -> Path:
        return sidecar_of(self.path)


@dataclass(frozen=True)
class Artifact:
    """A verified artifact: its bytes, and its sidecar (sha256, kind, created, versions, metadata)."""

    ref: ArtifactRef
    data: bytes
    sidecar: dict[str, Any] = field(repr=False)

    @property
    def metadata(self) -> dict[str, Any]:
        return self.sidecar.get("metadata", {})


def sha256_of(data: bytes | str | os.PathLike[str]) -> str:
    """Hex sha256 of bytes, or of a file's content read in 1 MiB chunks (models can be large)."""
    if isinstance(data, bytes | bytearray | memoryview):
        return hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    with open(data, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_of(path: Path) -> Path:
    """`<store>/<sha256>.<ext>` -> `<store>/<sha256>.json`."""
    return path.with_name(path.name.split(".", 1)[0] + ".json")


def tensor_schema(name: str, dtype: str, shape: Sequence[int | str], description: str = "") -> dict[str, Any]:
    """One input or output: a string in `shape` is a dynamic axis (e.g. "batch"), an int a fixed size."""
    return {"name": name, "dtype": dtype, "shape": list(shape), "description": description}


def _versions() -> dict[str, str]:
    found = {}
    for name in VERSIONED:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return found


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_artifact(
    data: bytes | str | os.PathLike[str],
    store: str | os.PathLike[str],
    kind: str,
    metadata: Mapping[str, Any] | None = None,
    ext: str | None = None,
) -> ArtifactRef:
    """Store bytes (or a file's content) as `<store>/<sha256>.<ext>` with a sidecar `<sha256>.json`.

    `metadata` is free-form JSON (by convention `card`, `input_schema`, `output_schema`);
    the sidecar adds the hash, size, kind, who created it when, and library versions.
    Saving the same bytes again leaves the file alone (or repairs a damaged copy) and rewrites the
    sidecar with this call's metadata, so re-running a notebook is harmless.
    """
    blob = bytes(data) if isinstance(data, bytes | bytearray | memoryview) else Path(data).read_bytes()
    ext = (ext or EXTENSIONS.get(kind, "bin")).lstrip(".")
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    digest = sha256_of(blob)
    path = store / f"{digest}.{ext}"
    if not (path.exists() and sha256_of(path) == digest):  # absent, or a damaged copy to repair
        _write_atomically(path, blob)
    sidecar = {
        "format": FORMAT,
        "sha256": digest,
        "file": path.name,
        "size_bytes": len(blob),
        "kind": kind,
        "created": {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "by": _user(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "versions": _versions(),
        "metadata": dict(metadata or {}),
    }
    try:
        text = json.dumps(sidecar, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ArtifactError(
            f"the metadata for {path.name} is not plain JSON (numbers, strings, lists, dicts): {err}"
        ) from err
    _write_atomically(sidecar_of(path), (text + "\n").encode())
    return ArtifactRef(path=path, sha256=digest, kind=kind)


def find(store: str | os.PathLike[str], sha256: str) -> ArtifactRef:
    """The artifact with this hash in a store (e.g. a hash pinned in a service's configuration)."""
    matches = [p for p in Path(store).glob(f"{sha256}.*") if p.suffix != ".json" and not p.name.startswith(".")]
    if len(matches) != 1:
        raise ArtifactError(
            f"expected one artifact with sha256 {sha256} in {store}, found {len(matches)}: "
            "check the hash, or save the artifact into this store first."
        )
    kind = json.loads(sidecar_of(matches[0]).read_text()).get("kind", "") if sidecar_of(matches[0]).exists() else ""
    return ArtifactRef(path=matches[0], sha256=sha256, kind=kind)


def _as_list(schema: Any) -> list[Any]:
    return list(schema) if isinstance(schema, list | tuple) else [schema]


def _schema_problems(found: Any, expected: Any) -> list[str]:
    found_list, expected_list = _as_list(found), _as_list(expected)
    if len(found_list) != len(expected_list):
        return [f"{len(expected_list)} input(s) expected, the artifact takes {len(found_list)}"]
    problems = []
    for want, got in zip(expected_list, found_list, strict=True):
        for key in ("name", "dtype", "shape"):
            if key in want and (not isinstance(got, Mapping) or got.get(key) != want[key]):
                actual = got.get(key) if isinstance(got, Mapping) else got
                problems.append(f"{key}: expected {want[key]!r}, the artifact was made for {actual!r}")
    return problems


def load_artifact(
    ref_or_path: ArtifactRef | str | os.PathLike[str],
    expected_sha256: str | None = None,
    *,
    expected_kind: str | None = None,
    expected_input: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> Artifact:
    """Read an artifact and refuse it unless its bytes hash to its name (and to `expected_sha256`).

    Also refused: a missing or foreign sidecar, another kind than `expected_kind`, and an input
    schema that differs from `expected_input` in name, dtype or shape. Every refusal is an
    ArtifactError naming the file, what was expected, what was found and what to do.
    """
    if isinstance(ref_or_path, ArtifactRef):
        path, pinned = Path(ref_or_path.path), ref_or_path.sha256
    else:
        path, pinned = Path(ref_or_path), None
    if not path.is_file():
        raise ArtifactError(f"{path}: no such artifact file. Save it first, or check the store folder and hash.")
    named = path.name.split(".", 1)[0]
    if not _SHA256.fullmatch(named):
        raise ArtifactError(
            f"{path}: the file name is not a sha256, so there is nothing to verify the content against. "
            "Store the file with save_artifact() and load the <sha256>.<ext> file it returns."
        )
    data = path.read_bytes()
    actual = sha256_of(data)
    if actual != named:
        raise ArtifactError(
            f"{path} is corrupted: its name promises sha256 {named} but its {len(data)} bytes hash to {actual}. "
            "The file was changed or truncated after it was saved; do not use it. Save the artifact again from "
            "its source model, or restore the file from a good copy."
        )
    for label, want in (("expected", expected_sha256), ("referenced", pinned)):
        if want is not None and not _SHA256.fullmatch(want.lower()):
            raise ArtifactError(f"{want!r} is not a sha256 (64 hex digits): pin the full hash of the artifact.")
        if want is not None and want.lower() != actual:
            raise ArtifactError(
                f"{path} is not the {label} artifact: expected sha256 {want.lower()}, found {actual}. "
                "It is intact but holds a different model (another export or version). Load the file named "
                f"{want.lower()}.<ext>, or update the pinned hash if this model is the one you mean."
            )
    sidecar_path = sidecar_of(path)
    if not sidecar_path.is_file():
        raise ArtifactError(
            f"{path}: the sidecar {sidecar_path.name} is missing, so its kind and input schema are unknown. "
            "Save the artifact again with save_artifact(), which writes both files."
        )
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except (OSError, ValueError) as err:
        raise ArtifactError(f"{sidecar_path}: unreadable sidecar ({err}); save the artifact again.") from err
    if sidecar.get("sha256") != actual:
        raise ArtifactError(
            f"{sidecar_path} describes sha256 {sidecar.get('sha256')}, not the file {path.name} it sits next "
            f"to (sha256 {actual}). Save the artifact again so that the two match."
        )
    if expected_kind is not None and sidecar.get("kind") != expected_kind:
        raise ArtifactError(
            f"{path}: expected a {expected_kind!r} artifact, found a {sidecar.get('kind')!r} one. "
            "Load an artifact of the kind this code runs, or use the loader for this kind."
        )
    if expected_input is not None:
        found_schema = sidecar.get("metadata", {}).get("input_schema")
        if found_schema is None:
            raise ArtifactError(
                f"{path}: the caller expects input {expected_input!r} but the sidecar records no input_schema. "
                "Save the artifact again with metadata['input_schema']."
            )
        problems = _schema_problems(found_schema, expected_input)
        if problems:
            raise ArtifactError(
                f"{path}: input schema mismatch ({'; '.join(problems)}). This artifact was exported for other "
                "inputs: convert the inputs to its schema, or load the artifact exported for yours."
            )
    return Artifact(
        ref=ArtifactRef(path=path, sha256=actual, kind=str(sidecar.get("kind", ""))), data=data, sidecar=sidecar
    )


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, on any device
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def max_abs_diff(a: Any, b: Any) -> float:
    """max |a - b| over all entries of two arrays or tensors of the same shape, in float64.

    Shapes must match exactly: broadcasting (N, 10) against (1, 10) would compare the wrong
    rows and report a meaningless number. NaN anywhere gives NaN, which passes no bar.
    """
    a64, b64 = _numpy(a), _numpy(b)
    if a64.shape != b64.shape:
        raise ValueError(f"cannot compare shapes {a64.shape} and {b64.shape}: outputs must have the same shape")
    if a64.size == 0:
        raise ValueError("nothing to compare: both outputs are empty")
    diff = np.abs(a64 - b64)
    return float("nan") if np.isnan(diff).any() else float(diff.max())


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _schema_lines(schema: Any) -> list[str]:
    lines = []
    for s in _as_list(schema):
        if isinstance(s, Mapping):
            note = f": {s['description']}" if s.get("description") else ""
            lines.append(f"- `{s.get('name')}`: {s.get('dtype')} {s.get('shape')}{note}")
    return lines


def model_card(
    card: Mapping[str, Any],
    *,
    sha256: str | None = None,
    kind: str | None = None,
    input_schema: Any = None,
    output_schema: Any = None,
    versions: Mapping[str, str] | None = None,
) -> str:
    """A model card in markdown: what the model is for, on what data, how well, and where it fails.

    `card` needs non-empty `name`, `intended_use`, `data`, `metrics` (a mapping of measured
    values) and `limitations` (text or a list); a card with a hole in it is an error, not a
    shorter card. Keyword arguments add the artifact's identity and interface.
    """
    missing = [k for k in CARD_FIELDS if not card.get(k)]
    if missing:
        raise ValueError(f"the model card lacks {missing}: every card states {list(CARD_FIELDS)}")
    if not isinstance(card["metrics"], Mapping):
        raise ValueError("card['metrics'] must map metric names to measured values, e.g. {'accuracy': 0.97}")
    lines = [f"# Model card: {card['name']}", ""]
    if sha256 or kind:
        lines += [f"**Artifact:** `{sha256 or '?'}` ({kind or 'unknown kind'})", ""]
    lines += [
        "## Intended use",
        str(card["intended_use"]),
        "",
        "## Data",
        str(card["data"]),
        "",
        "## Metrics",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in card["metrics"].items()]
    limitations = card["limitations"]
    items = [limitations] if isinstance(limitations, str) else list(limitations)
    lines += ["", "## Limitations"] + [f"- {item}" for item in items]
    if input_schema is not None or output_schema is not None:
        lines += ["", "## Interface"]
        if input_schema is not None:
            lines += ["Inputs:", *_schema_lines(input_schema)]
        if output_schema is not None:
            lines += ["Outputs:", *_schema_lines(output_schema)]
    extra = {k: v for k, v in card.items() if k not in CARD_FIELDS}
    if extra:
        lines += ["", "## Other"] + [f"- **{k}:** {_cell(v)}" for k, v in extra.items()]
    if versions:
        lines += ["", "## Made with", ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))]
    return "\n".join(lines) + "\n"


def card_of(artifact: Artifact) -> str:
    """The model card of a loaded artifact, from its sidecar (metadata['card'] and the schemas)."""
    meta = artifact.metadata
    if "card" not in meta:
        raise ArtifactError(f"{artifact.ref.path}: the sidecar has no model card (metadata['card']).")
    return model_card(
        meta["card"],
        sha256=artifact.ref.sha256,
        kind=artifact.ref.kind,
        input_schema=meta.get("input_schema"),
        output_schema=meta.get("output_schema"),
        versions=artifact.sidecar.get("versions"),
    )
