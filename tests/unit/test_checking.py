import pytest

from course.machinery.checking import explain

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "error, advice",
    [
        ("NotImplementedError: ", "replace `raise NotImplementedError()`"),
        ("AssertionError: accuracy 0.81 is below 0.90", "accuracy 0.81 is below 0.90"),
        ("AssertionError: ", "read the test cell"),
        ("NameError: name 'model' is not defined", "earlier cell"),
        ("CellTimeoutError: No reply", "loop that never ends"),
        ("ValueError: shapes differ", "ValueError: shapes differ"),
    ],
)
def test_explain_speaks_to_the_learner(error, advice):
    assert advice in explain(error)
