"""Classical unsupervised hashing of fixed features: the baselines that need no training labels."""

from __future__ import annotations

import numpy as np


def itq_codes(
    x_train: np.ndarray, x_test: np.ndarray, bits: int, seed: int = 0, iterations: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """ITQ (Gong & Lazebnik 2011): PCA to ``bits`` dims, then the rotation that best aligns the
    projections with the hypercube's vertices. Returns codes in [0, 1]: a sigmoid of the
    standardised rotated projections (binarised at 0.5 = the sign).

    Example::

        z_db, z_query = itq_codes(features_db, features_query, bits=64)
    """
    from sklearn.decomposition import PCA

    if bits > min(x_train.shape):
        raise ValueError(f"itq_codes: {bits} bits need at least {bits} training rows and feature dims")
    pca = PCA(n_components=bits, random_state=seed).fit(x_train)
    v_train, v_test = pca.transform(x_train), pca.transform(x_test)
    rng = np.random.default_rng(seed)
    rotation = np.linalg.qr(rng.standard_normal((bits, bits)))[0]
    for _ in range(iterations):
        b = np.sign(v_train @ rotation)
        u, _, vt = np.linalg.svd(b.T @ v_train)
        rotation = (u @ vt).T
    scale = (v_train @ rotation).std(axis=0) + 1e-12

    def squash(v: np.ndarray) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-(v @ rotation) / scale))).astype(np.float32)

    return squash(v_train), squash(v_test)


def lsh_codes(
    x_train: np.ndarray, x_test: np.ndarray, bits: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Sign random projections (Charikar 2002) of the centred features: the data-independent
    baseline. Codes in [0, 1] (a sigmoid of the projections scaled by their std).

    Example::

        z_db, z_query = lsh_codes(features_db, features_query, bits=64)
    """
    rng = np.random.default_rng(seed)
    mean = x_train.mean(axis=0)
    planes = rng.standard_normal((x_train.shape[1], bits))
    p_train, p_test = (x_train - mean) @ planes, (x_test - mean) @ planes
    scale = p_train.std(axis=0) + 1e-12

    def squash(p: np.ndarray) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-p / scale))).astype(np.float32)

    return squash(p_train), squash(p_test)
