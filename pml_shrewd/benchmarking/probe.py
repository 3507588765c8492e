"""Linear-probe accuracy of codes (scikit-learn)."""

from __future__ import annotations

import numpy as np


def linear_probe(z_train, y_train, z_test, y_test, samples: int = 10000, seed: int = 0) -> float:
    """Test accuracy of a logistic-regression probe trained on ``samples`` seeded rows of the codes.

    Example::

        acc = linear_probe(db_codes, db_labels, query_codes, query_labels)
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    z_train, z_test = np.asarray(z_train), np.asarray(z_test)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(z_train), size=min(samples, len(z_train)), replace=False)
    # Standardised inputs: lbfgs then converges on near-binary codes within the budget.
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    probe.fit(z_train[pick], np.asarray(y_train)[pick])
    return float(probe.score(z_test, np.asarray(y_test)))
