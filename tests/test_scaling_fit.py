"""The compute-to-parity fit (`graftlm.evaluation.scaling`) on synthetic points with a known law."""

from __future__ import annotations

import numpy as np
import pytest

from graftlm.evaluation.scaling import fit_power_law


def synthetic(noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    flops = np.logspace(15, 17, 5)
    excess = 50.0 * flops ** -0.12 * np.exp(rng.normal(0, noise, len(flops)))
    return flops, 1.0 + excess


def test_recovers_a_known_law_exactly_without_noise():
    flops, ratios = synthetic(0.0)
    fit = fit_power_law(list(flops), list(ratios))
    assert fit.b == pytest.approx(0.12, rel=1e-6)
    point, low, high = fit.flops_for(1.05)
    assert point == pytest.approx((50.0 / 0.05) ** (1 / 0.12), rel=1e-6)
    assert low == pytest.approx(point, rel=1e-3) and high == pytest.approx(point, rel=1e-3)


def test_noise_gives_an_interval_around_the_point():
    flops, ratios = synthetic(0.05)
    fit = fit_power_law(list(flops), list(ratios))
    assert 0.05 < fit.b < 0.2
    point, low, high = fit.flops_for(1.05)
    assert low < point < high


@pytest.mark.parametrize("flops, ratios, match", [
    ([1e15, 1e16], [1.5, 1.4], "at least 3"),
    ([1e15, 1e16, 1e17], [1.5, 1.0, 1.2], "must be > 1"),
    ([1e15, -1.0, 1e17], [1.5, 1.4, 1.2], "positive"),
])
def test_bad_points_are_refused(flops, ratios, match):
    with pytest.raises(ValueError, match=match):
        fit_power_law(flops, ratios)
