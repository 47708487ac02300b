"""The committed data: every file matches its manifest, and the loaders read it right."""

import numpy as np
import pytest

from course import data

pytestmark = pytest.mark.data


def test_every_manifest_entry_verifies():
    problems = {path: msg for path, msg in data.check_all().items() if msg}
    assert not problems, problems


def test_manifest_has_provenance_license_and_upstream_url():
    """Every file says where it came from; only files written for this course have no upstream to fetch."""
    for entry in data.read_manifest().values():
        assert entry.source and entry.license, entry.path
        ours = entry.source.startswith("written for this course")
        assert entry.url.startswith(("https://", "http://")) or (ours and not entry.url), entry.path


def test_a_file_written_for_the_course_cannot_be_fetched_and_says_how_to_restore_it():
    ours = [e.path for e in data.read_manifest().values() if not e.url]
    assert ours, "the course's own question set is in the manifest"
    with pytest.raises(data.DatasetError, match="git checkout -- datasets/"):
        data.fetch(ours[0])


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_mnist_style_sets_have_the_published_shapes_and_balance(name):
    x_train, y_train = data.load_mnist("train", name)
    x_test, y_test = data.load_mnist("test", name)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
    assert set(np.unique(y_train)) == set(range(10))
    counts = np.bincount(y_test, minlength=10)
    assert counts.min() >= 890 and counts.max() <= 1135  # published MNIST test counts per class


def test_mnist_first_labels_are_the_published_ones():
    _, y_train = data.load_mnist("train")
    assert y_train[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]


def test_load_mnist_rejects_unknown_split():
    with pytest.raises(ValueError, match="split"):
        data.load_mnist("validation")


def test_bank_marketing_has_the_leaky_column_and_the_published_size():
    df = data.load_bank_marketing()
    assert len(df) == 41188 and "duration" in df.columns and set(df["y"]) == {"yes", "no"}
    assert abs((df["y"] == "yes").mean() - 0.1127) < 0.001


def test_banking77_has_77_intents_in_both_splits():
    train, test = data.load_banking77("train"), data.load_banking77("test")
    assert (len(train), len(test)) == (10003, 3080)
    cats = data.banking77_categories()
    assert len(cats) == 77 and set(train["category"]) == set(cats) == set(test["category"])


def test_sms_spam_parses_every_line():
    df = data.load_sms_spam()
    assert len(df) == 5574 and (df["label"] == "spam").sum() == 747
