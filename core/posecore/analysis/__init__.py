"""Model analysis: parameter and multiply-accumulate counts."""

from posecore.analysis._complexity import Complexity, measure_complexity

__all__ = ["Complexity", "measure_complexity"]
