"""``posecore compare``: models measured under one protocol, in one process.

Published tables mix protocols (boxes, flip test, metric code, hardware). A comparison evaluates
every model on the datasets, boxes, metrics and flip setting of the first one's config
(:mod:`._protocol`), refuses with the reason a model that cannot be scored there, counts
parameters and GFLOPs in the papers' convention and times every model on one device
(:mod:`._measure`), and writes a table, Markdown, CSV, JSON and a picture of accuracy against
speed (:mod:`._report`). With no models named, the finished runs of a folder that were evaluated
on the same data are compared (:mod:`._inputs`).
"""

from posecore._compare._comparison import Comparison, compare
from posecore._compare._inputs import Candidate, Skipped, finished_runs_on_the_same_data, from_arguments
from posecore._compare._report import print_comparison, write_outputs

__all__ = ["Candidate", "Comparison", "Skipped", "compare", "finished_runs_on_the_same_data", "from_arguments",
           "print_comparison", "write_outputs"]
