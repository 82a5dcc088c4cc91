"""Compute to parity: a power law of the excess ratio (SLLM ÷ backbone bits per byte − 1) against
training FLOPs, fitted in log-log space, and the compute at which it predicts a target ratio.

    excess(F) = a · F^(−b)   ⇔   log excess = log a − b · log F

Least squares on the logs (numpy), with the parameters' covariance from the residuals; the
compute for ``target`` (e.g. ×1.05) is F* = (a / (target − 1))^(1/b). Its uncertainty comes from
drawing (log a, b) from the fit's Gaussian (a parametric bootstrap): the 16th/84th percentiles.
With few points (the quality run has 5 budgets) the interval is wide, and it says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class PowerLawFit:
    log_a: float
    b: float  # the excess falls as F^(-b)
    cov: np.ndarray  # 2x2 covariance of (log a, b)
    points: int

    def excess(self, flops: float | np.ndarray) -> float | np.ndarray:
        return np.exp(self.log_a) * np.asarray(flops, dtype=float) ** (-self.b)

    def flops_for(self, target_ratio: float, *, draws: int = 20000, seed: int = 0) -> tuple[float, float, float]:
        """(median-free point estimate, 16th, 84th percentile) of the FLOPs that reach ``target_ratio``."""
        if not target_ratio > 1.0:
            raise ValueError(f"target_ratio must be > 1 (a ratio of bits per byte above parity), got {target_ratio}")
        log_t = math.log(target_ratio - 1.0)
        point = math.exp((self.log_a - log_t) / self.b) if self.b > 0 else math.inf
        rng = np.random.default_rng(seed)
        samples = rng.multivariate_normal([self.log_a, self.b], self.cov, size=draws)
        good = samples[:, 1] > 0  # a non-falling excess never reaches the target
        logs = (samples[good, 0] - log_t) / samples[good, 1]
        if good.mean() < 0.84:
            return point, float(np.exp(np.percentile(logs, 16))) if good.any() else math.nan, math.inf
        return point, float(np.exp(np.percentile(logs, 16))), float(np.exp(np.percentile(logs, 84)))


def fit_power_law(flops: list[float], ratios: list[float]) -> PowerLawFit:
    """Fit excess = ratio − 1 = a·F^(−b) to (FLOPs, bits-per-byte ratio) points."""
    f = np.asarray(flops, dtype=float)
    r = np.asarray(ratios, dtype=float)
    if f.shape != r.shape or f.ndim != 1:
        raise ValueError(f"flops and ratios must be 1-D lists of equal length, got {f.shape} and {r.shape}")
    if len(f) < 3:
        raise ValueError(f"a power-law fit with an uncertainty needs at least 3 budgets, got {len(f)}")
    if not np.all(np.isfinite(f)) or np.any(f <= 0):
        raise ValueError("every FLOPs value must be a positive finite number")
    if np.any(~np.isfinite(r)) or np.any(r <= 1.0):
        bad = [float(x) for x in r if not (np.isfinite(x) and x > 1.0)]
        raise ValueError(f"ratios must be > 1 (the fit is of ratio − 1 on a log scale); got {bad}: a run at or "
                         "below parity has no excess to fit")
    x, y = np.log(f), np.log(r - 1.0)
    design = np.stack([np.ones_like(x), -x], 1)
    coef, _, _, _ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    dof = max(len(x) - 2, 1)
    sigma2 = float(resid @ resid) / dof
    cov = sigma2 * np.linalg.inv(design.T @ design)
    return PowerLawFit(float(coef[0]), float(coef[1]), cov, len(x))
