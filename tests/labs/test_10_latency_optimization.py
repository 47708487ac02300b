"""Lab 10: plausible wrong answers that must lose points, and the solution's milestone figure."""

from __future__ import annotations

import pytest

from tests.support import Mutant

pytestmark = pytest.mark.grading
LAB = "10-latency-optimization"

MUTANTS = [
    Mutant(
        "a batcher that waits for a full batch: at low load the batch never fills and the request hangs",
        cell="ex-batcher",
        old="item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()",
        new="item = self._queue.get()",
        loses=["test-batcher-timing", "test-service"],
    ),
    Mutant(
        "a batcher that always sleeps max_wait_ms before draining the queue, even when the batch is already full",
        cell="ex-batcher",
        old="            while size < self.max_batch_size:\n",
        new="            time.sleep(max(0.0, deadline - time.monotonic()))\n"
        "            while size < self.max_batch_size:\n",
        loses=["test-batcher-timing"],
    ),
    Mutant(
        "the model's exception kills the worker thread: the callers of that batch (and every later one) hang",
        cell="ex-batcher",
        old="        except BaseException as exc:  # every caller of this batch gets the error; the worker goes on\n"
        "            for _, _, future in batch:\n                future.set_exception(exc)\n            return\n",
        new="        finally:\n            pass\n",
        loses=["test-batcher"],
    ),
    Mutant(
        "calibrated on raw pixels scaled to [0, 1], not normalized like the served model's input",
        cell="ex-quantize",
        old="return models.normalize(torch.from_numpy(images[pick])).numpy()",
        new="return (images[pick].astype(np.float32) / 255).reshape(-1, 1, 28, 28)",
        loses=["test-calibration", "test-quantize"],
    ),
    Mutant(
        "dynamic quantization: no calibration, activation ranges measured at run time",
        cell="ex-quantize",
        old="""    quantize_static(str(fp32_path), str(int8_path), Batches(), quant_format=QuantFormat.QOperator,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=False)""",
        new="""    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)""",
        loses=["test-quantize", "test-service"],
    ),
]


def test_solution_reaches_the_milestone(solution_milestone):
    """The bar (a 2x cut at 80% of the naive capacity) is what grading demands.

    The course map's target for our own solution (a 5x cut) is a speed-up, so the benchmark reports it
    (`course run 10`, its figures in the README) instead of a timed assert here: one 6 s window per variant
    has measured from 3.2x to 24x on the same code, depending on what else ran on the machine.
    """
    found = solution_milestone(LAB)
    assert found.passed, found.describe()
