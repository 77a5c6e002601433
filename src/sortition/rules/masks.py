"""Vectorized masks of one condition over one column of a frame.

The semantics live in :mod:`sortition.serving.column_masks` (one implementation, shared with the
columnar scoring calls); this module only turns a pandas Series into its column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sortition.rules.condition import Condition
from sortition.serving.column_masks import column_from_values
from sortition.serving.column_masks import condition_mask as _column_mask


def condition_mask(column: pd.Series, condition: Condition) -> np.ndarray:
    """Boolean mask ``(n,)`` of the rows of ``column`` that satisfy ``condition``."""
    return _column_mask(column_from_values(column), condition.operator, condition.value, condition._predicate)
