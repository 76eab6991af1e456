"""Does the model describe the data? The adequacy verdict, separate from the sampler's ``converged``.

A fit with fitted error terms can make any model's χ² look right by inflating the errors, so adequacy is
judged by two checks that inflation cannot pass:

1. **Size of the inferred error terms.** The posterior median of every fitted term must stay below a
   stated bound: ``noise.nonclosing`` ≤ 0.10 (a 10 % baseline error, about 10° of closure phase: five
   times the EHT 2017 quality-assurance bound of 2 % and 1°; a larger term means the model, not the
   instrument, leaves the data unexplained) and ``noise.fractional`` ≤ 0.30 (amplitude calibration is
   typically good to 5–20 %, the LMT's worse).
2. **Posterior predictive check of the scan-by-scan misfit**, per product kind. Under the model (error
   terms included) the whitened residuals of every scan are independent standard normals, so each
   scan's χ²_s = Σ z² is χ² with k_s degrees of freedom. The statistic
   D = mean over scans of (χ²_s − k_s)² / (2 k_s) is about 1 then, and grows when some scans fit much
   worse than others (structure a uniform inflation cannot absorb) or when all misfit (no error term).
   For posterior draws s, D of the data is compared with D of replicated data (χ² draws with the same
   k_s): the p-value is the fraction of replications at least as extreme. p < 0.001 fails (a small
   threshold: a survey runs thousands of fits, and a fit should be called inadequate only when the
   evidence is overwhelming).

``adequate`` is true when every check passes; ``adequacy`` records the statistics, thresholds and
reasons.
"""
from __future__ import annotations

import numpy as np

NOISE_BOUNDS = {"noise.nonclosing": 0.10, "noise.fractional": 0.30}
P_VALUE_LIMIT = 1e-3
PPC_DRAWS = 400
REPLICATIONS = 10


def scan_dispersion(z2: np.ndarray, scan_index: np.ndarray, k: np.ndarray) -> np.ndarray:
    """D for every row of ``z2`` (draws × data): per-scan χ² from ``scan_index`` (data -> 0..n_scans-1)
    with ``k`` data per scan."""
    chi2 = np.zeros((z2.shape[0], len(k)))
    np.add.at(chi2, (slice(None), scan_index), z2)
    return np.mean((chi2 - k) ** 2 / (2 * k), axis=1)


def adequacy_verdict(z2: dict[str, np.ndarray], scans: dict[str, np.ndarray], noise_medians: dict[str, float],
                     seed: int = 0, degrees_of_freedom: dict[str, int] | None = None) -> dict:
    """The adequacy checks of the module docstring.

    ``z2``: per kind, squared whitened residuals (draws × data) against the total errors; ``scans``: per
    kind, the scan of every datum; ``noise_medians``: posterior medians of the fitted error terms;
    ``degrees_of_freedom``: per kind, the Gaussian terms in each datum's z² (default 1; a complex
    visibility's z² sums its real and imaginary parts: 2), so a scan's χ² has k_s = data × that."""
    rng = np.random.default_rng(seed)
    reasons, checks = [], {}
    for name, median in noise_medians.items():
        bound = NOISE_BOUNDS.get(name)
        if bound is None:
            continue
        ok = bool(median <= bound)
        checks[name] = {"median": float(median), "bound": bound, "ok": ok}
        if not ok:
            reasons.append(f"{name} {median:.3g} > {bound}: the model leaves errors larger than the instrument's")
    for kind, values in z2.items():
        values = np.asarray(values, np.float64)
        if values.shape[1] == 0:
            continue
        labels, scan_index = np.unique(np.asarray(scans[kind]), return_inverse=True)
        k = np.bincount(scan_index, minlength=len(labels)).astype(np.float64) * (degrees_of_freedom or {}).get(kind, 1)
        rows = rng.choice(values.shape[0], size=min(PPC_DRAWS, values.shape[0]), replace=False)
        observed = scan_dispersion(values[rows], scan_index, k)
        # REPLICATIONS replicated data sets per draw, so the smallest p-value resolved is well below the limit
        replicated = np.mean((rng.chisquare(k, size=(REPLICATIONS, len(rows), len(k))) - k) ** 2 / (2 * k), axis=2)
        p_value = float(np.mean(replicated >= observed[None, :]))
        ok = p_value >= P_VALUE_LIMIT
        checks[kind] = {"scan_dispersion": float(np.median(observed)), "p_value": p_value, "n_scans": int(len(k)),
                        "ok": bool(ok)}
        if not ok:
            reasons.append(f"{kind}: scan-by-scan misfit D = {np.median(observed):.3g} (p < {P_VALUE_LIMIT:g}; "
                           "about 1 when the model and its error terms describe the data)")
    return {"adequate": not reasons, "checks": checks, "reasons": reasons,
            "thresholds": {"noise": NOISE_BOUNDS, "p_value": P_VALUE_LIMIT}}
