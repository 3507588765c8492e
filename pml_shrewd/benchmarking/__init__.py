"""Benchmark protocols built on the one training path (:class:`~pml_shrewd.training.Trainer`).

A benchmark is a list of rows (:class:`Row`: a name and a :class:`~pml_shrewd.training.TrainConfig`
file, or a classical method on the same features), run through the trainer with the same
features, budget and seed, then checked (:func:`check_claims`) and written out
(:mod:`.report`: JSON, markdown table, HP@k curves PNG, codes as npz with item names).
"""

from .claims import check_claims
from .classical import itq_codes, lsh_codes
from .probe import linear_probe
from .rows import Row, load_rows, run_rows

__all__ = ["Row", "check_claims", "itq_codes", "linear_probe", "load_rows", "lsh_codes", "run_rows"]
