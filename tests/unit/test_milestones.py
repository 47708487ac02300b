import math

import nbformat
import pytest

from course import milestones

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "measured, bar, higher, passed",
    [
        (91.0, 90.0, True, True),
        (89.99, 90.0, True, False),
        (90.0, 90.0, True, True),
        (5e-7, 1e-6, False, True),
        (2e-6, 1e-6, False, False),
        (math.nan, 1.0, True, False),
    ],
)
def test_pass_depends_on_direction(measured, bar, higher, passed):
    assert milestones.Milestone("lab", "m", measured, bar, higher).passed is passed


def test_record_leaves_a_machine_readable_copy_that_read_finds():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    captured = []
    shell.display_pub.publish = lambda data, metadata=None, **kw: captured.append(data)
    try:
        m = milestones.record("02-mnist-classifier", "MNIST test accuracy", 99.1, 90.0, unit="%")
    finally:
        InteractiveShell.clear_instance()
    assert m.passed
    cell = nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output("display_data", data=captured[0])])
    found = milestones.read([cell])
    assert found == [m]
    assert "reached" in captured[0]["text/plain"] and "99.10%" in captured[0]["text/plain"]


def test_read_ignores_other_outputs():
    cell = nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output("stream", name="stdout", text="hi")])
    assert milestones.read([cell]) == []
