"""course.serving.models: the cached starting models of the serving labs."""

from __future__ import annotations

import pytest
import torch

from course.serving import models

pytestmark = pytest.mark.unit


def test_normalize_accepts_uint8_and_unit_floats_alike():
    pixels = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    a, b = models.normalize(pixels), models.normalize(pixels.float() / 255)
    assert a.shape == (4, 1, 28, 28) and torch.allclose(a, b)
    assert torch.isclose(models.normalize(torch.zeros(1, 784)).mean(), torch.tensor(-models.MEAN / models.STD))


def test_recipe_key_changes_with_every_field():
    base = models.Recipe()
    keys = {base.key(), models.Recipe(epochs=3).key(), models.Recipe(arch="cnn").key(), models.Recipe(seed=1).key()}
    assert len(keys) == 4 and base.key() == models.Recipe().key()


@pytest.mark.parametrize("arch", ["mlp", "cnn", "mlp-wide"])
def test_architectures_map_images_to_ten_logits(arch):
    assert models.ARCHITECTURES[arch]()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_pretrained_trains_once_then_loads_and_survives_a_truncated_cache(tmp_path, monkeypatch):
    calls = []

    def fake_train(recipe):
        calls.append(recipe)
        torch.manual_seed(len(calls))
        return models.mlp().eval()

    monkeypatch.setattr(models, "train", fake_train)
    first = models.pretrained(cache=tmp_path)
    second = models.pretrained(cache=tmp_path)
    assert len(calls) == 1 and not second.training
    assert all(torch.equal(p, q) for p, q in zip(first.parameters(), second.parameters(), strict=True))
    (cached,) = tmp_path.glob("*.pt")
    cached.write_bytes(cached.read_bytes()[:100])
    models.pretrained(cache=tmp_path)
    assert len(calls) == 2, "a truncated cache file is trained again, not trusted"


def test_the_wide_mlp_is_big_enough_to_be_memory_bound():
    model = models.ARCHITECTURES["mlp-wide"]()
    weights = sum(p.numel() for p in model.parameters())
    assert weights == 784 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 10 + 10
    assert weights * 4 > 64 * 2**20, "float32 weights larger than any CPU cache: one image streams them from memory"
    assert any(r.arch == "mlp-wide" for r in models.STANDARD), "warmed at set-up: training it takes about a minute"
