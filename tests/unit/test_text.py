"""course.foundations.text: mean pooling on synthetic tensors, and the offline encoder on a few short sentences."""

from __future__ import annotations

import io
from contextlib import redirect_stderr

import pytest
import torch

from course.foundations import text

pytestmark = pytest.mark.unit
torch.set_num_threads(1)

SENTENCES = ["my card has not arrived yet", "how do I top up with cash?", "cancel that transfer", "hi"]


@pytest.fixture(scope="module")
def encoder():
    stderr = io.StringIO()
    with redirect_stderr(stderr):
        tokenizer, model = text.load_encoder("cpu")
    assert stderr.getvalue() == "", f"loading the encoder wrote to stderr: {stderr.getvalue()!r}"
    return tokenizer, model


def test_mean_pool_averages_only_unmasked_positions() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]], [[5.0, 5.0], [7.0, 9.0], [0.0, 1.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    pooled = text.mean_pool(hidden, mask)
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 3.0], [4.0, 5.0]]))


def test_mean_pool_does_not_depend_on_how_much_padding_follows() -> None:
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(1, 4, 8, generator=gen)
    padded = torch.cat([hidden, 50 * torch.randn(1, 6, 8, generator=gen)], dim=1)
    mask = torch.cat([torch.ones(1, 4, dtype=torch.long), torch.zeros(1, 6, dtype=torch.long)], dim=1)
    torch.testing.assert_close(text.mean_pool(padded, mask), hidden.mean(dim=1))


def test_mean_pool_rejects_mismatched_shapes_and_survives_an_empty_row() -> None:
    with pytest.raises(ValueError):
        text.mean_pool(torch.zeros(2, 3, 4), torch.ones(2, 4))
    out = text.mean_pool(torch.ones(1, 2, 3), torch.zeros(1, 2, dtype=torch.long))
    assert torch.isfinite(out).all(), "an all-padding row must not divide by zero"


def test_encoder_files_are_local() -> None:
    path = text.encoder_path()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt"):
        assert (path / name).is_file(), name


def test_load_encoder_gives_an_eval_mode_minilm(encoder) -> None:
    tokenizer, model = encoder
    assert not model.training, "a freshly loaded encoder is in eval mode (dropout off)"
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    ids = tokenizer("card")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id


def test_embed_is_normalised_deterministic_and_independent_of_batching(encoder) -> None:
    tokenizer, model = encoder
    a = text.embed(SENTENCES, tokenizer, model, batch_size=4)
    b = text.embed(SENTENCES, tokenizer, model, batch_size=1)
    assert a.shape == (4, 384) and a.dtype == torch.float32 and a.device.type == "cpu"
    torch.testing.assert_close(a.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)  # padding to a batch's longest text changes nothing
    torch.testing.assert_close(a, text.embed(SENTENCES, tokenizer, model, batch_size=4), atol=0, rtol=0)
    raw = text.embed(SENTENCES, tokenizer, model, normalize=False)
    assert not torch.allclose(raw.norm(dim=1), torch.ones(4), atol=1e-3)
    torch.testing.assert_close(torch.nn.functional.normalize(raw, dim=1), a, atol=1e-5, rtol=1e-4)


def test_embed_keeps_input_order_and_separates_meanings(encoder) -> None:
    tokenizer, model = encoder
    e = text.embed(SENTENCES + ["where is my new card? it has not come"], tokenizer, model, batch_size=2)
    single = text.embed([SENTENCES[2]], tokenizer, model)
    torch.testing.assert_close(e[2], single[0], atol=1e-5, rtol=1e-4)
    sims = e[-1] @ e[:4].T
    assert sims.argmax().item() == 0, f"the paraphrase should be closest to sentence 0, similarities {sims.tolist()}"


def test_embed_runs_in_eval_mode_without_grad_and_restores_the_mode(encoder) -> None:
    tokenizer, model = encoder
    model.train()
    try:
        a = text.embed(SENTENCES, tokenizer, model)
        b = text.embed(SENTENCES, tokenizer, model)
        assert model.training, "embed must give the model its previous (training) mode back"
    finally:
        model.eval()
    assert not a.requires_grad
    torch.testing.assert_close(a, b, atol=0, rtol=0)  # dropout off, so no randomness


def test_embed_of_nothing_and_bad_batch_size(encoder) -> None:
    tokenizer, model = encoder
    assert text.embed([], tokenizer, model).shape == (0, 384)
    with pytest.raises(ValueError):
        text.embed(SENTENCES, tokenizer, model, batch_size=0)
