"""The ways of classifying the masks that the toy experiments compare (toy versions of the paper's tables).

* table 3 (single embeddings and pairs): A, B, D, A+B, A+D, B+D, each a weighted geometric mean of
  the branches' class probabilities with equal weights, the same for seen and new classes;
* table 4 (balancing): "A+B+D unbalanced" uses the seen weights for every class; "A+B+D official" the
  official per-class weights (seen 0.21/0.7/0.09, new 0/0.7/0.3), "A+B+D paper" the paper's arithmetic
  balancing of embeddings (eq. 9-13, a = 0.2, b = 0.7, g = 0).
Each mode is a dict of :meth:`ebseg_lite.inference.predictor.EBSegPredictor.classify` keyword arguments.
"""
from __future__ import annotations

from typing import Dict

MODES: Dict[str, dict] = {
    "A": dict(w_seen=(1, 0, 0), w_new=(1, 0, 0)),
    "B": dict(w_seen=(0, 1, 0), w_new=(0, 1, 0)),
    "D": dict(w_seen=(0, 0, 1), w_new=(0, 0, 1)),
    "A+B": dict(w_seen=(0.5, 0.5, 0), w_new=(0.5, 0.5, 0)),
    "A+D": dict(w_seen=(0.5, 0, 0.5), w_new=(0.5, 0, 0.5)),
    "B+D": dict(w_seen=(0, 0.5, 0.5), w_new=(0, 0.5, 0.5)),
    "A+B+D unbalanced": dict(w_seen=(0.21, 0.7, 0.09), w_new=(0.21, 0.7, 0.09)),
    "A+B+D official": dict(balancing="official"),
    "A+B+D paper": dict(balancing="paper"),
}
