"""Simulation-based calibration (SBC) of a campaign's fits: do the posteriors' intervals mean what they say?

A calibration run (Talts et al. 2018) repeats, for simulation i = 0 .. n − 1:

1. **Truth.** Every free model parameter is drawn from its prior, or uniformly from a stated range
   (``truths: {d: [35, 50]}``), or set to a stated number; draws depend only on (seed, i), so batches of
   any size give the same simulations. Drawing from a range narrower than the prior is not strict SBC
   (ranks are uniform only when truths come from the fit's prior); where the data dominate the prior the
   coverage of the intervals is still the nominal one, and this is what the run checks.
2. **Data.** The truth is observed on the coverage of a real file (``like``: its records and thermal
   σ, intra-site baselines dropped, scan-averaged as the campaign prepares real data), with thermal
   noise, a complex baseline-based error of fraction ``nonclosing`` constant within each scan (it does
   not cancel in closures; default 5 %) and station gains exp(a + iφ) per station and scan with
   a ~ N(0, ``gains``²) and φ uniform (they cancel in closures);
   :func:`vlbicore.data.simulate.observe`.
3. **Fit.** The campaign's fit configuration (model, products, noise model, sampler, priors) is fitted
   to each simulation; the simulations of one batch are one :func:`vlbicore.inference.fit.fit_many`
   call (one compiled program for all of them).
4. **Ranks and coverage.** Per parameter (free, derived, and the fitted non-closing term, whose truth is
   the injected fraction): the PIT value u = P(θ < θ_true | data), mass-weighted over the chains of all
   sampled modes (a chain's weight is its mode's mass over the mode's chain count); the SBC rank of the
   truth among ``rank_draws`` thinned draws (each chain contributes draws in proportion to its weight,
   evenly spaced along it); and whether the central 50 / 68 / 95 % interval contains the truth
   (equivalently (1 − c)/2 ≤ u ≤ (1 + c)/2). Angles are taken relative to the truth on the circle:
   draws θ − θ_true are wrapped into (−π, π] (period 2π; π for axis angles) and compared with 0.

The per-simulation table (one row per simulation and parameter) is written atomically as CSV;
:func:`coverage_table` turns any number of them into the coverage per parameter and level with binomial
confidence intervals (Jeffreys by default, Clopper–Pearson on request), and :func:`coverage_consistent`
says whether the observed counts lie inside the binomial acceptance interval of the nominal rate.
The workflow's calibration mode (``calibration:`` in the campaign config, ``workflow/rules/calibration.smk``)
runs batches as jobs through ``vlbicore calibrate run`` and gathers them with ``vlbicore calibrate gather``.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from vlbicore.config import FitConfig
from vlbicore.data.averaging import average_scans
from vlbicore.data.simulate import observe
from vlbicore.data.uvfits import load_uvfits
from vlbicore.errors import VlbiError
from vlbicore.inference.fit import fit_many
from vlbicore.inference.transforms import ParameterSpace
from vlbicore.likelihood import with_systematic
from vlbicore.products import build_products
from vlbicore.products.base import wrap_phase_np
from vlbicore.store.atomic import write_file_atomically

LEVELS = (0.5, 0.68, 0.95)
RANK_DRAWS = 99  # thinned draws per posterior for the SBC rank: ranks 0..99, 100 bins
TABLE_COLUMNS = ("simulation", "parameter", "truth", "mean", "sd", "median", "pit", "rank", "n_rank",
                 *(f"in{round(100 * c)}" for c in LEVELS), "converged", "adequate", "multimodal",
                 "chi2_total_per_n", "model", "batch_seconds")


@dataclasses.dataclass(frozen=True)
class CalibrationPlan:
    """One calibration run: ``like`` (uvfits whose coverage and σ are used), ``config`` (the fit
    configuration: model, products, noise model, sampler, priors), ``model_name`` (the campaign's model
    id, recorded in the table), ``n_simulations``, ``batch_size`` (simulations per fit_many call / job),
    ``nonclosing`` (fraction of the injected baseline-based error, per real and imaginary part),
    ``gains`` (sd of the log station gain amplitudes; a number or per station code with ``default``),
    ``truths`` (parameter -> [low, high] uniform range or a number; others from the prior), ``seed``,
    ``rank_draws`` (thinned draws per posterior for the rank), ``drop_intra_site`` / ``scan_average``
    (how ``like`` is prepared, as the campaign's ``prepare:`` says)."""

    like: str
    config: FitConfig
    model_name: str = "model"
    n_simulations: int = 100
    batch_size: int = 25
    nonclosing: float = 0.05
    gains: float | Mapping = 0.1
    truths: Mapping = dataclasses.field(default_factory=dict)
    seed: int = 0
    rank_draws: int = RANK_DRAWS
    drop_intra_site: bool = True
    scan_average: bool = True

    def __post_init__(self):
        checks = [("n_simulations", isinstance(self.n_simulations, int) and self.n_simulations >= 1, "an integer >= 1"),
                  ("batch_size", isinstance(self.batch_size, int) and self.batch_size >= 1, "an integer >= 1"),
                  ("nonclosing", _fraction(self.nonclosing), "a fraction >= 0, e.g. 0.05"),
                  ("rank_draws", isinstance(self.rank_draws, int) and self.rank_draws >= 1, "an integer >= 1")]
        gains = self.gains.values() if isinstance(self.gains, Mapping) else [self.gains]
        checks.append(("gains", all(_fraction(g) for g in gains), "a number >= 0 or a mapping station -> number"))
        for name, ok, valid in checks:
            if not ok:
                raise VlbiError(f"calibration.{name}: {getattr(self, name)!r} is invalid; use {valid}")
        free = set(self.config.sky_model.names)
        for name, value in self.truths.items():
            if name not in free:
                raise VlbiError(f"calibration.truths.{name}: not a free parameter of model {self.model_name!r} "
                                f"(free: {', '.join(sorted(free))})")
            ok = (_number(value) or (isinstance(value, (list, tuple)) and len(value) == 2
                                     and all(_number(x) for x in value) and value[0] < value[1]))
            if not ok:
                raise VlbiError(f"calibration.truths.{name}: {value!r} is neither a number nor a range [low, high] "
                                "with low < high")

    @property
    def n_batches(self) -> int:
        return math.ceil(self.n_simulations / self.batch_size)

    def batch_indices(self, batch: int) -> range:
        """The simulations of batch ``batch`` (0-based)."""
        if not 0 <= batch < self.n_batches:
            raise VlbiError(f"calibration batch {batch}: out of range; this plan has batches 0..{self.n_batches - 1}")
        return range(batch * self.batch_size, min((batch + 1) * self.batch_size, self.n_simulations))

    @classmethod
    def from_section(cls, section: Mapping, config: FitConfig, model_name: str, prepare: Mapping | None = None):
        """A plan from a campaign's ``calibration:`` section (see docs/workflow.md) for one of its models."""
        prepare = prepare or {}
        known = {"like", "models", "n_simulations", "batch_size", "nonclosing", "gains", "truths", "seed",
                 "rank_draws"}
        unknown = sorted(set(section) - known)
        if unknown:
            raise VlbiError(f"calibration: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        if "like" not in section:
            raise VlbiError("calibration.like: missing; name the uvfits file whose coverage the simulations use")
        return cls(like=str(section["like"]), config=config, model_name=model_name,
                   n_simulations=int(section.get("n_simulations", 100)), batch_size=int(section.get("batch_size", 25)),
                   nonclosing=float(section.get("nonclosing", 0.05)), gains=section.get("gains", 0.1),
                   truths=dict(section.get("truths", {})), seed=int(section.get("seed", 0)),
                   rank_draws=int(section.get("rank_draws", RANK_DRAWS)),
                   drop_intra_site=bool(prepare.get("drop_intra_site", True)),
                   scan_average=bool(prepare.get("scan_average", True)))


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _fraction(x) -> bool:
    return _number(x) and x >= 0


def _seed(plan_seed: int, index: int, stream: int) -> int:
    """An integer seed of simulation ``index`` for one stream (truth, data, fit), independent of batching."""
    return int(np.random.SeedSequence([int(plan_seed), int(index), int(stream)]).generate_state(1)[0])


def draw_truth(plan: CalibrationPlan, index: int) -> dict[str, float]:
    """The free model parameters of simulation ``index``: stated numbers, uniform in stated ranges, or
    prior draws (each parameter from its own stream, so stating one does not change the others)."""
    model = plan.config.sky_model
    truth = {}
    for j, param in enumerate(model.params):
        rng = np.random.default_rng([_seed(plan.seed, index, 0), j])
        given = plan.truths.get(param.name)
        if given is None:
            space = ParameterSpace.of([param])
            truth[param.name] = float(space.wrap(space.to_values(space.draw(rng, 1)))[0, 0])
        elif _number(given):
            truth[param.name] = float(given)
        else:
            truth[param.name] = float(rng.uniform(given[0], given[1]))
    return truth


def simulate_products(plan: CalibrationPlan, template, truth: Mapping[str, float], index: int):
    """The data products of simulation ``index``: ``truth`` observed on ``template`` (the raw records of
    ``like``) with the plan's errors, prepared and built as the campaign's fits build them."""
    config = plan.config
    model = config.sky_model
    obs = observe(template, lambda u, v: np.asarray(model.visibility(truth, u, v)), noise=True,
                  seed=_seed(plan.seed, index, 1), nonclosing=plan.nonclosing, gains=plan.gains)
    if plan.scan_average:
        obs = average_scans(obs)
    obs = with_systematic(obs, config.systematic)
    return build_products(obs, config.products, covariance=config.covariance, amp_likelihood=config.amp_likelihood,
                          snr_cut=config.snr_cuts)


def load_template(plan: CalibrationPlan):
    """The raw records of ``plan.like`` (read once per batch)."""
    if not Path(plan.like).is_file():
        raise VlbiError(f"calibration.like: {plan.like} does not exist; name a uvfits file of the campaign")
    return load_uvfits(plan.like, scan_average=False, drop_intra_site=plan.drop_intra_site)


def run_batch(plan: CalibrationPlan, batch: int, *, progress=None) -> pd.DataFrame:
    """Simulate and fit the simulations of batch ``batch`` (one fit_many call); the table of
    :data:`TABLE_COLUMNS`, one row per simulation and calibrated parameter."""
    t0 = time.perf_counter()
    indices = list(plan.batch_indices(batch))
    template = load_template(plan)
    truths = [draw_truth(plan, i) for i in indices]
    product_sets = [simulate_products(plan, template, t, i) for t, i in zip(truths, indices)]
    if progress:
        progress(f"calibration batch {batch}: {len(indices)} simulations built; fitting")
    config = plan.config
    results = fit_many(product_sets, config.sky_model, config.sampler, config.noise_model,
                       seeds=[_seed(plan.seed, i, 2) for i in indices])
    seconds = time.perf_counter() - t0
    frames = [posterior_rows(plan, result, truth, index) for result, truth, index in zip(results, truths, indices)]
    frame = pd.concat(frames, ignore_index=True)
    frame["batch_seconds"] = seconds
    return frame[list(TABLE_COLUMNS)]


def calibrated_truths(plan: CalibrationPlan, truth: Mapping[str, float]) -> dict[str, float]:
    """Every calibrated quantity's true value: free parameters, derived ones, and the fitted non-closing
    term (true value: the injected fraction) when the fit has it."""
    model, noise = plan.config.sky_model, plan.config.noise_model
    out = dict(truth)
    out.update({k: float(v) for k, v in model.derived(truth).items()})
    if "noise.nonclosing" in noise.names:
        out["noise.nonclosing"] = float(plan.nonclosing)
    return out


def periods_of(plan: CalibrationPlan) -> dict[str, float]:
    """Period of every angle among the calibrated quantities."""
    return {k: float(a["period"]) for k, a in plan.config.sky_model.variable_attrs().items() if "period" in a}


def posterior_rows(plan: CalibrationPlan, result, truth: Mapping[str, float], index: int) -> pd.DataFrame:
    """One simulation's rows: PIT, rank and interval coverage of every calibrated quantity."""
    weights = np.asarray(result.diagnostics["chain_weight"], np.float64)
    periods = periods_of(plan)
    gof = result.goodness_of_fit
    chi2_total = sum(g["chi2_total"] for g in gof.values()) / max(sum(g["n"] for g in gof.values()), 1)
    rows = []
    for name, value in calibrated_truths(plan, truth).items():
        if name not in result.posterior:
            continue
        draws = np.asarray(result.posterior[name], np.float64)
        row = {"simulation": index, "parameter": name, "truth": value,
               **rank_statistics(draws, weights, value, periods.get(name), plan.rank_draws)}
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["converged"] = bool(result.convergence.get("converged", False))
    frame["adequate"] = bool(result.adequacy.get("adequate", False))
    frame["multimodal"] = bool(result.multimodal)
    frame["chi2_total_per_n"] = chi2_total
    frame["model"] = plan.model_name
    return frame


def rank_statistics(draws: np.ndarray, chain_weights: np.ndarray, truth: float, period: float | None = None,
                    rank_draws: int = RANK_DRAWS) -> dict:
    """PIT, thinned rank and central-interval coverage of ``truth`` under the posterior ``draws``
    (chain, draw) with per-chain ``chain_weights`` (see the module docstring); angles with ``period``
    are compared on the circle, relative to the truth."""
    draws = np.asarray(draws, np.float64)
    n_chain, n_draw = draws.shape
    w = np.asarray(chain_weights, np.float64)
    w = w / w.sum()
    if period:
        rel = np.mod(draws - truth + period / 2, period) - period / 2   # wrapped into [-P/2, P/2)
        centre = 0.0
    else:
        rel, centre = draws, truth
    below = (rel < centre).astype(np.float64)
    pit = float(np.sum(w[:, None] * below) / n_draw)
    # thinned rank: each chain gives draws in proportion to its weight, evenly spaced along the chain
    per_chain = _apportion(w, rank_draws)
    picked = [rel[c, np.linspace(0, n_draw - 1, k).round().astype(int)] for c, k in enumerate(per_chain) if k]
    picked = np.concatenate(picked) if picked else np.zeros(0)
    flat_w = np.repeat(w / n_draw, n_draw)
    flat = rel.reshape(-1)
    mean = float(np.sum(flat_w * flat))
    sd = float(np.sqrt(max(np.sum(flat_w * (flat - mean) ** 2), 0.0)))
    order = np.argsort(flat)
    cdf = np.cumsum(flat_w[order])
    median = float(flat[order][min(np.searchsorted(cdf, 0.5), len(flat) - 1)])
    if period:  # report values, not offsets
        mean, median = float(np.mod(mean + truth + period / 2, period) - period / 2), \
            float(np.mod(median + truth + period / 2, period) - period / 2)
    out = {"mean": mean, "sd": sd, "median": median, "pit": pit, "rank": int(np.sum(picked < centre)),
           "n_rank": int(len(picked))}
    for c in LEVELS:
        out[f"in{round(100 * c)}"] = bool((1 - c) / 2 <= pit <= (1 + c) / 2)
    return out


def _apportion(weights: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to ``weights`` summing to ``total`` (largest remainders)."""
    raw = weights * total
    out = np.floor(raw).astype(int)
    rest = total - int(out.sum())
    if rest > 0:
        out[np.argsort(-(raw - out))[:rest]] += 1
    return out


# ------------------------------------------------------------------------------------------------------
# tables


def write_table(frame: pd.DataFrame, path, *, overwrite: bool = True) -> Path:
    """Write a table as CSV, atomically (a killed job leaves no half-written table)."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return write_file_atomically(path, buffer.getvalue().encode(), overwrite=overwrite, what="calibration table")


def read_tables(paths) -> pd.DataFrame:
    """The per-simulation tables of several batches, as one (sorted by simulation and parameter)."""
    frames = []
    for path in paths:
        try:
            frames.append(pd.read_csv(path))
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise VlbiError(f"{path}: not a readable calibration table ({exc}); rerun its batch") from None
        missing = sorted(set(TABLE_COLUMNS) - set(frames[-1].columns))
        if missing:
            raise VlbiError(f"{path}: not a calibration table (missing {', '.join(missing)}); rerun its batch")
    if not frames:
        raise VlbiError("calibrate gather: no tables given; pass the batch CSVs of `vlbicore calibrate run`")
    frame = pd.concat(frames, ignore_index=True)
    duplicated = frame.duplicated(["model", "simulation", "parameter"])
    if duplicated.any():
        raise VlbiError(f"calibrate gather: simulation {int(frame.simulation[duplicated].iloc[0])} appears in two "
                        "tables; give each batch once")
    return frame.sort_values(["model", "simulation", "parameter"], ignore_index=True)


def binomial_interval(k: int, n: int, confidence: float = 0.95, method: str = "jeffreys") -> tuple[float, float]:
    """Confidence interval of a binomial rate from ``k`` successes in ``n`` trials: ``jeffreys``
    (Beta(k + ½, n − k + ½) quantiles, the interval recommended by Brown, Cai & DasGupta 2001) or
    ``clopper-pearson`` (exact, conservative)."""
    if n == 0:
        return (0.0, 1.0)
    a = (1 - confidence) / 2
    if method == "jeffreys":
        low = stats.beta.ppf(a, k + 0.5, n - k + 0.5) if k > 0 else 0.0
        high = stats.beta.ppf(1 - a, k + 0.5, n - k + 0.5) if k < n else 1.0
    elif method == "clopper-pearson":
        low = stats.beta.ppf(a, k, n - k + 1) if k > 0 else 0.0
        high = stats.beta.ppf(1 - a, k + 1, n - k) if k < n else 1.0
    else:
        raise VlbiError(f"binomial interval: unknown method {method!r}; use jeffreys or clopper-pearson")
    return float(low), float(high)


def coverage_table(frame: pd.DataFrame, *, confidence: float = 0.95, method: str = "jeffreys") -> pd.DataFrame:
    """Per model, parameter and level: simulations n, covered k, rate k/n, its binomial confidence
    interval, and ``consistent`` (the nominal level lies inside that interval)."""
    rows = []
    for (model, parameter), group in frame.groupby(["model", "parameter"], sort=True):
        n = len(group)
        for c in LEVELS:
            k = int(group[f"in{round(100 * c)}"].astype(bool).sum())
            low, high = binomial_interval(k, n, confidence, method)
            rows.append({"model": model, "parameter": parameter, "level": c, "n": n, "covered": k,
                         "rate": k / n, "ci_low": low, "ci_high": high, "ci": f"{confidence:g} {method}",
                         "consistent": bool(low <= c <= high),
                         "converged_fraction": float(group["converged"].astype(bool).mean())})
    return pd.DataFrame(rows)


def coverage_consistent(k: int, n: int, level: float, alpha: float = 0.01) -> bool:
    """Whether ``k`` of ``n`` intervals at nominal ``level`` is inside the central 1 − ``alpha``
    binomial(n, level) acceptance interval (the test of a calibrated fit)."""
    low, high = stats.binom.interval(1 - alpha, n, level)
    return bool(low <= k <= high)


def gather(paths, out_dir, *, confidence: float = 0.95, method: str = "jeffreys", plots: bool = True) -> dict:
    """Batch tables -> ``calibration.csv`` (every simulation), ``coverage.csv`` (per parameter and level)
    and, with ``plots``, ECDF-difference plots in ``out_dir``; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = read_tables(paths)
    coverage = coverage_table(frame, confidence=confidence, method=method)
    written = {"calibration": write_table(frame, out_dir / "calibration.csv"),
               "coverage": write_table(coverage, out_dir / "coverage.csv")}
    summary = {"n_simulations": int(frame.simulation.nunique()), "models": sorted(frame.model.unique()),
               "confidence": confidence, "method": method}
    written["summary"] = write_file_atomically(out_dir / "calibration.json", json.dumps(summary, indent=1).encode(),
                                               overwrite=True, what="calibration summary")
    if plots:
        from vlbicore.survey.calibration_plots import ecdf_difference_plots

        written.update(ecdf_difference_plots(frame, out_dir / "plots"))
    return written


def injected_gain_scores(gains: Mapping, true_grid: np.ndarray) -> tuple[list, float]:
    """(kind, station, inside its 95 % interval, z-score) of every injected gain of one fit (``gains``: its
    ``FitResult.gains``; ``true_grid``: the injected complex gains, station × segment, e.g. from
    :func:`vlbicore.data.simulate.injected_gains_at`), and the z-score of the set's mean log-amplitude.
    Log-amplitudes are scored relative to the mean of the set's gains (in
    every draw, and in the truth): their common level trades with the total flux and is known only
    through the gain prior, so its error is shared by every gain of a set and scored once, as the
    level's z. Phases are scored relative to each scan's reference station, on the circle."""
    scores, level_z = [], float("nan")
    grid = np.asarray(gains["log_amplitude"])
    draws = grid.reshape(-1, *grid.shape[2:])
    present = np.all(np.isfinite(draws), axis=0) & np.all(np.isfinite(true_grid), axis=0)[None, :]
    if present.any():
        x, true = draws[:, present], np.log(np.abs(true_grid[present]))
        level, true_level = x.mean(axis=1), true.mean()
        level_z = float((true_level - level.mean()) / level.std())
        x, true = x - level[:, None], true - true_level
        stations = np.array(gains["stations"])[np.nonzero(present)[0]]
        for j in range(x.shape[1]):
            low, high = np.quantile(x[:, j], [0.025, 0.975])
            scores.append(("log_amplitude", stations[j], low <= true[j] <= high,
                           (true[j] - x[:, j].mean()) / x[:, j].std()))
    if "phase" in gains:
        grid = np.asarray(gains["phase"])
        draws = grid.reshape(-1, *grid.shape[2:])
        for k in range(draws.shape[2]):
            g = true_grid[:, k]
            if not np.all(np.isfinite(g)):
                continue  # the segment lies in no single injected scan
            here = np.all(np.isfinite(draws[:, :, k]), axis=0)
            fixed = here & np.all(draws[:, :, k] == 0, axis=0)  # the scan's reference station
            if not fixed.any():
                continue
            true = wrap_phase_np(np.angle(g) - np.angle(g[np.flatnonzero(fixed)[0]]))
            for s in np.flatnonzero(here & ~fixed):
                x = draws[:, s, k]
                centre = np.angle(np.mean(np.exp(1j * x)))
                x, value = wrap_phase_np(x - centre), wrap_phase_np(true[s] - centre)
                low, high = np.quantile(x, [0.025, 0.975])
                scores.append(("phase", gains["stations"][s], low <= value <= high, (value - x.mean()) / x.std()))
    return scores, level_z
