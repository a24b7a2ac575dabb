"""Metrics whose value can be undefined: shown as undefined, never as 0.

A ratio over an interval in which nothing was counted (mining precision when nothing
was mined, the precision of a class never mined for) is 0 / 0. Keras' `Mean` shows it
as 0.0, which reads as "every mined position was wrong". `DefinedMean` shows NaN
instead: "nan" in the progress line and in history.csv, NaN in TensorBoard, and null
in any JSON the project writes (`coseg_tf.run_dir.jsonable`; JSON has no NaN).
"""

from __future__ import annotations

import keras
from keras import ops


class DefinedMean(keras.metrics.Mean):
    """A (weighted) mean over the updates that are defined; NaN when there is none.

    An update counts with its `sample_weight` (1 by default); an update whose value is
    NaN (an undefined ratio, e.g. 0 / 0 for a step with nothing to count) counts with
    weight 0. The result is total / count, and NaN when count is 0 (Keras' `Mean`
    gives 0.0 there).

    Use it for diagnostics only: a NaN loss must stay visible (`StopOnNaN` reads the
    loss trackers, which are plain `Mean`s).

    Args:
      name: the metric's name.
      dtype: its dtype.

    Example:

    >>> m = DefinedMean("mining_precision")
    >>> m.update_state(0.0, sample_weight=0.0)  # nothing mined in this step
    >>> float(m.result())
    nan
    """

    def update_state(self, values, sample_weight=None):
        values = ops.convert_to_tensor(values, dtype=self.dtype)
        defined = ops.logical_not(ops.isnan(values))
        weight = ops.cast(defined, self.dtype)
        if sample_weight is not None:
            weight = weight * ops.convert_to_tensor(sample_weight, dtype=self.dtype)
        super().update_state(ops.where(defined, values, ops.zeros_like(values)),
                             sample_weight=weight)

    def result(self):
        count = ops.cast(self.count, self.dtype)
        return ops.where(count > 0, ops.divide_no_nan(self.total, count),
                         ops.full_like(self.total, float("nan")))
