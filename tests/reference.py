"""Float64 references written straight from the paper's formulas, with loops.

Deliberately naive: no vectorization tricks, so that they are easy to check by
eye against Kagebaeck & Mogren, Sections 2.1 and 3.1.
"""

import math

import numpy as np


def covariance(h):
    """C = (H - 1 h_bar)^T (H - 1 h_bar) / (N - 1)."""
    h = np.asarray(h, dtype=np.float64)
    n, p = h.shape
    mean = [sum(h[k, i] for k in range(n)) / n for i in range(p)]
    c = np.zeros((p, p))
    for i in range(p):
        for j in range(p):
            c[i, j] = sum((h[k, i] - mean[i]) * (h[k, j] - mean[j]) for k in range(n))
            c[i, j] /= max(n - 1, 1)
    return c


def l_sigma(c):
    """Eq. 1-2: sum_{i,j} |C_ij| / p^2."""
    p = len(c)
    return sum(abs(c[i][j]) for i in range(p) for j in range(p)) / p**2


def cvr(c):
    """sum_{i,j} |C_ij| / tr(C) (PAPER-NOTES: no extra 1/p^2)."""
    p = len(c)
    return sum(abs(c[i][j]) for i in range(p) for j in range(p)) / sum(
        c[i][i] for i in range(p)
    )


def mapc(c):
    """2/(p^2 - p) sum_{i<j} |C_ij| / sqrt(C_ii C_jj), over units with variance."""
    active = [i for i in range(len(c)) if c[i][i] > 0]
    p = len(active)
    total = 0.0
    for a in range(p):
        for b in range(a + 1, p):
            i, j = active[a], active[b]
            total += abs(c[i][j]) / (math.sqrt(c[i][i]) * math.sqrt(c[j][j]))
    return 2.0 / (p * p - p) * total


def spectrum(c, basis):
    values = np.linalg.eigvalsh(c) if basis == "pca" else np.diag(c)
    return sorted((max(float(v), 0.0) for v in values), reverse=True)


def tdv(c, d, basis):
    values = spectrum(c, basis)
    return sum(values[:d]) / sum(values)


def ud(c, q, basis):
    values = spectrum(c, basis)
    total = sum(values)
    running = 0.0
    for k, v in enumerate(values, start=1):
        running += v
        if running >= q * total * (1 - 1e-10):
            return k
    return len(values)


def effective_rank(c, basis):
    values = spectrum(c, basis)
    total = sum(values)
    entropy = -sum(v / total * math.log(v / total) for v in values if v > 0)
    return math.exp(entropy)


def participation_ratio(c, basis):
    values = spectrum(c, basis)
    return sum(values) ** 2 / sum(v * v for v in values)


def decov(h):
    """Cogswell et al. (2016), eq. 1: 1/2 sum_{i != j} C_ij^2, C with 1/N."""
    h = np.asarray(h, dtype=np.float64)
    n = h.shape[0]
    c = covariance(h) * (max(n - 1, 1) / n)
    p = len(c)
    return 0.5 * sum(c[i][j] ** 2 for i in range(p) for j in range(p) if i != j)


def l_sigma_gradient(h):
    """dL_Sigma/dH = 2 (H - 1 h_bar) sign(C) / ((N - 1) p^2)."""
    h = np.asarray(h, dtype=np.float64)
    n, p = h.shape
    centered = h - h.mean(axis=0)
    return 2.0 * centered @ np.sign(covariance(h)) / ((n - 1) * p * p)
