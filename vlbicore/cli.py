"""The ``vlbicore`` command line: prepare, fit, summary, gather, plot, report, status, campaign init,
profile install, validate-config, simulate, models.

Heavy imports (JAX, ehtim, xarray) happen inside the sub-commands, after the device set-up, so that
``--host-devices`` can still shape JAX's CPU backend and ``vlbicore --help`` answers at once. Every
``VlbiError`` becomes one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

from vlbicore import __version__
from vlbicore.errors import VlbiError

# --------------------------------------------------------------------------------------------------
# helpers


def _set_host_devices(n: int | None):
    """Expose ``n`` CPU devices to JAX (chain-parallel on CPU cores); must run before JAX starts."""
    if n is None or n < 1 or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}").strip()


def enable_compilation_cache():
    """Persist XLA compilations across processes (a rerun of the same fit skips compiling).

    Off with VLBICORE_JAX_CACHE=off; the location is VLBICORE_JAX_CACHE or ~/.cache/vlbicore/jax."""
    location = os.environ.get("VLBICORE_JAX_CACHE", str(pathlib.Path.home() / ".cache" / "vlbicore" / "jax"))
    if location.lower() in ("off", "0", "no", ""):
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", location)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    # a model's programs are shared by files of similar size (data are arguments, padded): ~0.4 MB per
    # model and size; keep the newest 1 GiB (LRU)
    jax.config.update("jax_compilation_cache_max_size", 1 << 30)


def _parse_mapping(text: str, what: str) -> dict:
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise VlbiError(f"{what}: not valid YAML/JSON ({str(exc).splitlines()[0]}); fix the syntax") from None
    if not isinstance(value, dict):
        raise VlbiError(f"{what}: expected a mapping of settings, got {type(value).__name__}")
    return value


def _read_mapping_file(path: str, what: str) -> dict:
    try:
        text = pathlib.Path(path).read_text()
    except OSError as exc:
        raise VlbiError(f"{what}: cannot read {path} ({exc.strerror}); give an existing YAML/JSON file") from None
    return _parse_mapping(text, f"{what} {path}")


def _products_arg(text: str) -> list[str]:
    from vlbicore.products import PRODUCT_KINDS

    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in names if p not in PRODUCT_KINDS]
    if bad or not names:
        raise VlbiError(f"--products: {', '.join(bad) or 'empty'} unknown; use a comma list of {', '.join(PRODUCT_KINDS)}")
    return names


SAMPLER_FLAGS = ("chains", "warmup", "samples", "seed", "dtype", "chain_method", "starts")


def fit_config_from_args(args):
    """The fit configuration of ``vlbicore fit``: --config FILE, then --fit-json, then the flags (each
    layer wins over the one before; see :class:`vlbicore.config.FitConfig`)."""
    from vlbicore.config import FitConfig

    layers = []
    if args.config:
        layers.append((_read_mapping_file(args.config, "--config"), f"--config {args.config}"))
    if args.fit_json:
        layers.append((_parse_mapping(args.fit_json, "--fit-json"), "--fit-json"))
    flags: dict = {}
    if args.model:
        path = pathlib.Path(args.model)
        is_file = path.suffix in (".yaml", ".yml", ".json")
        flags["model"] = _read_mapping_file(str(path), "--model") if is_file else {"type": args.model}
    if args.order is not None:
        model = flags.get("model") or next((layer["model"] for layer, _ in reversed(layers) if "model" in layer), None)
        model = {"type": model} if isinstance(model, str) else model
        if not isinstance(model, dict) or "type" not in model:
            raise VlbiError("--order: only applies to a single m-ring model given with --model")
        flags["model"] = {**model, "order": args.order}
    if args.products:
        flags["products"] = _products_arg(args.products)
    if args.noise:
        flags["noise"] = args.noise
    if args.snr_cut is not None:
        flags["snr_cut"] = args.snr_cut
    if args.gains or args.gain_method or args.gain_segment:
        earlier = next((layer["gains"] for layer, _ in reversed(layers) if "gains" in layer), None)
        gains = dict(earlier) if isinstance(earlier, dict) else {}
        if args.gain_method:
            gains["method"] = args.gain_method
        if args.gain_segment:
            gains["segment"] = args.gain_segment
        flags["gains"] = gains or True
    if getattr(args, "snapshots", None):
        flags["snapshots"] = args.snapshots
    sampler = {flag: getattr(args, flag) for flag in SAMPLER_FLAGS if getattr(args, flag) is not None}
    if not any("progress" in layer.get("sampler", {}) for layer, _ in layers):
        sampler["progress"] = sys.stderr.isatty() and not args.quiet
    flags["sampler"] = sampler
    layers.append((flags, "command line"))
    return FitConfig.from_layers(*layers)


# --------------------------------------------------------------------------------------------------
# sub-commands


def cmd_prepare(args):
    from vlbicore.data import load_uvfits, save_prepared

    obs = load_uvfits(args.data, scan_average=not args.no_scan_average, drop_intra_site=not args.keep_intra_site)
    save_prepared(obs, args.out)
    print(f"prepared {args.data} -> {args.out}: {len(obs.u)} rows, {len(obs.stations)} stations; flagged {obs.flag_counts}")


def _prepare_output(out: pathlib.Path, overwrite: bool) -> None:
    """Refuse an existing ``--out`` unless ``overwrite``; create its folder (one-line errors)."""
    if out.exists() and not overwrite:
        raise VlbiError(f"--out: {out} already exists; pass --overwrite to replace it or choose another path")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VlbiError(f"--out: cannot create {out.parent} ({exc.strerror}); choose a writable location") from None


def cmd_fit(args):
    config = fit_config_from_args(args)
    out = pathlib.Path(args.out)
    _prepare_output(out, args.overwrite)
    _set_host_devices(args.host_devices or min(config.sampler.chains, os.cpu_count() or 1))
    enable_compilation_cache()

    from vlbicore.pipeline import run_fit, run_snapshot_fit

    epoch_info = {key: getattr(args, key) for key in ("source", "date", "band") if getattr(args, key)}
    run = run_fit if config.snapshots is None else run_snapshot_fit
    store = run(args.data, config, out, epoch=args.epoch, overwrite=args.overwrite, epoch_info=epoch_info,
                campaign=args.campaign)
    if not args.quiet:
        from vlbicore.store import format_summary

        print(format_summary(store))


def cmd_calibrate_run(args):
    import json

    from vlbicore.config import FitConfig

    config = FitConfig.from_dict(_parse_mapping(args.fit_json, "--fit-json"), "--fit-json")
    section = _parse_mapping(args.calibration_json, "--calibration-json") if args.calibration_json else {}
    section = {**section, "like": args.like}
    for key in ("n_simulations", "batch_size", "nonclosing", "gains", "seed"):
        if getattr(args, key) is not None:
            section[key] = getattr(args, key)
    prepare = _parse_mapping(args.prepare_json, "--prepare-json") if args.prepare_json else {}
    out = pathlib.Path(args.out)
    _prepare_output(out, args.overwrite)
    _set_host_devices(args.host_devices or min(config.sampler.chains, os.cpu_count() or 1))
    enable_compilation_cache()

    from vlbicore.calibration import CalibrationPlan, run_batch, write_table

    plan = CalibrationPlan.from_section(section, config, args.model_name, prepare)
    progress = None if args.quiet else (lambda text: print(text, file=sys.stderr))
    frame = run_batch(plan, args.batch, progress=progress)
    write_table(frame, out, overwrite=args.overwrite)
    if not args.quiet:
        print(json.dumps({"batch": args.batch, "simulations": int(frame.simulation.nunique()), "out": str(out)}))


def cmd_calibrate_gather(args):
    from vlbicore.calibration import gather

    written = gather(args.tables, args.out, confidence=args.confidence, method=args.method, plots=not args.no_plots)
    import pandas as pd

    coverage = pd.read_csv(written["coverage"])
    for row in coverage.itertuples():
        print(f"{row.model:14s} {row.parameter:18s} {row.level:4.2f}: {row.covered:4d}/{row.n:<4d} "
              f"[{row.ci_low:.2f}, {row.ci_high:.2f}]{'' if row.consistent else '  off nominal'}")


def cmd_fit_batch(args):
    config = fit_config_from_args(args)
    items = _parse_batch(args.batch_json)
    for item in items:
        out = pathlib.Path(item["out"])
        if out.exists() and not args.overwrite:
            raise VlbiError(f"--batch-json: {out} already exists; pass --overwrite to replace it or choose another path")
        out.parent.mkdir(parents=True, exist_ok=True)
    _set_host_devices(args.host_devices or min(config.sampler.chains * len(items), os.cpu_count() or 1))
    enable_compilation_cache()

    from vlbicore.pipeline import run_fit_batch

    stores = run_fit_batch(items, config, overwrite=args.overwrite, campaign=args.campaign)
    if not args.quiet:
        for store in stores:
            print(f"wrote {store}")


def _parse_batch(text: str) -> list[dict]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise VlbiError(f"--batch-json: not JSON ({exc.msg}); give a list of {{data, out, epoch}} objects") from None
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise VlbiError("--batch-json: expected a non-empty list of {data, out, epoch, source, date, band} objects")
    return items


def cmd_summary(args):
    from vlbicore.store import format_summary, summary_table

    frame = summary_table(args.store)
    print(format_summary(args.store, frame))
    if args.csv:
        frame.to_csv(args.csv)
    if args.plots:  # the per-fit plots in the same process: one start-up and one store read per fit
        _plot(args.store, args.plots, args.formats)


def _plot(store, out, formats_text: str) -> list:
    formats = [f.strip() for f in formats_text.split(",") if f.strip()]
    unknown = sorted(set(formats) - {"png", "svg", "pdf"}) or ([] if formats else ["(none)"])
    if unknown:
        raise VlbiError(f"--formats: {', '.join(unknown)} not supported; use a comma list of png, svg, pdf")
    enable_compilation_cache()  # the model image program is the same for every fit of a model
    from vlbicore.survey.plots import plot_fit

    return plot_fit(store, out, formats=formats)


def cmd_gather(args):
    from vlbicore.survey.gather import gather_stores

    result = gather_stores(args.stores, args.out, scheduler=args.scheduler, loo_weights=args.loo_weights)
    print(f"gathered {len(result.fits)} of {len(args.stores)} store(s) -> {args.out}")
    problems = getattr(result, "problems", None)
    if problems:
        print(f"{len(problems)} problem(s) reported in {args.out}/problems.csv", file=sys.stderr)


def cmd_plot(args):
    for path in _plot(args.store, args.out, args.formats):
        print(path)


def cmd_report(args):
    from vlbicore.survey.report import write_report

    print(write_report(args.gather_dir, args.out, fit_plots_dir=args.fit_plots_dir,
                       calibration_dir=args.calibration))


def cmd_status(args):
    from vlbicore.survey.status import campaign_status, format_status

    status = campaign_status(args.results_dir, workdir=args.directory, configfile=args.configfile)
    print(format_status(status, limit=None if args.all else args.limit))


def cmd_validate_config(args):
    from vlbicore.survey.campaign import validate_campaign

    validate_campaign(args.config)
    print(f"{args.config}: valid")


def cmd_campaign_init(args):
    from vlbicore.survey.campaign_init import init_campaign

    result = init_campaign(args.files, args.out, sheet_path=args.sheet, name=args.name, like=args.like,
                           overwrite=args.force)
    for line in result.skipped:  # one line per file left out, so none disappears unnoticed
        print(f"vlbicore: {line}", file=sys.stderr)
    print(f"wrote {result.config} and {result.sheet}: {len(result.epochs)} epoch(s) of "
          f"{len(result.sources)} source(s) ({', '.join(result.sources)}), {len(result.skipped)} file(s) left out")
    print(f"next: snakemake --configfile {result.config} --dry-run")


def cmd_profile_install(args):
    from vlbicore.survey.profiles import install_profile

    installed = install_profile(args.name, directory=args.dir, site=args.site, copy=args.copy, force=args.force)
    if installed.backup:
        print(f"moved the existing {installed.path} aside to {installed.backup}")
    verb = {"linked": "linked to", "copied": "copied from", "unchanged": "already links to"}[installed.action]
    print(f"{installed.path} {verb} {installed.source}")
    print(f"now: snakemake --profile {installed.name}   (docs/cluster.md: the environment variables it reads)")


def cmd_simulate(args):
    """Observe ``models.visibility(args.model, u, v, **params)`` and write uvfits."""
    import numpy as np

    from vlbicore.data.simulate import parse_params, simulate_observation
    from vlbicore.inference import use_precision
    from vlbicore.models import visibility

    use_precision("float64")  # model visibilities in float64 (this process only simulates)
    params = parse_params(args.param)
    visibility(args.model, np.zeros(1), np.zeros(1), **params)  # fail early on a bad model or parameter
    obs = simulate_observation(lambda u, v: visibility(args.model, u, v, **params), array=args.array,
                               like=args.like, noise=not args.no_noise, seed=args.seed, out=args.out)
    print(f"simulated {args.model} {params} on {'coverage of ' + str(args.like) if args.like else args.array}: "
          f"{len(obs)} records, {len(obs.stations)} stations -> {args.out}")


def cmd_models(args):
    from vlbicore.models import describe_models

    print(describe_models())


def build_parser() -> argparse.ArgumentParser:
    # "@FILE" reads arguments from FILE, one per line: a campaign's thousands of store paths for gather
    parser = argparse.ArgumentParser(prog="vlbicore", description=__doc__.splitlines()[0], fromfile_prefix_chars="@")
    parser.add_argument("--version", action="version", version=f"vlbicore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="uvfits -> flagged, scan-averaged observation (.npz, checksummed)")
    p.add_argument("data", help="calibrated Stokes I (or RR/LL) uvfits file")
    p.add_argument("--out", required=True, help="prepared observation to write (.npz)")
    p.add_argument("--no-scan-average", action="store_true", help="keep every integration (no scan averaging)")
    p.add_argument("--keep-intra-site", action="store_true", help="keep ALMA-APEX / JCMT-SMA baselines")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("fit", help="fit one model to one observation; write one Zarr store")
    p.add_argument("data", help="uvfits file or a prepared .npz")
    p.add_argument("--out", required=True, help="output Zarr store (directory)")
    p.add_argument("--model", help="model type name (see `vlbicore models`) or a YAML file composing components")
    p.add_argument("--order", type=int, help="m-ring order m (number of β_k coefficients)")
    p.add_argument("--products", help="comma list of vis, amp, cphase, lcamp (default cphase,lcamp)")
    p.add_argument("--noise", choices=("default", "none"),
                   help="error terms fitted with the model: default (non-closing term for closures, fractional term "
                        "for amplitudes/visibilities) or none (thermal errors only); finer control in --config")
    p.add_argument("--snr-cut", dest="snr_cut", type=float,
                   help="drop rows with |V|/sigma below this from every product (default: log closure amplitudes "
                        "below 3, where they are biased)")
    p.add_argument("--gains", action="store_true",
                   help="fit station gains with the EHT 2017 default priors (log-amplitude sd 0.1, LMT 1.0, one gain "
                        "per station and scan; amplitudes: marginalised analytically; vis: sampled); priors and "
                        "per-station overrides: `gains:` in --config")
    p.add_argument("--gain-method", dest="gain_method", choices=("marginal", "sampled"),
                   help="how gains are handled (implies --gains): marginal (amp: gain log-amplitudes integrated out, "
                        "the default) or sampled (gains are posterior parameters, stored in the `gains` group)")
    p.add_argument("--gain-segment", dest="gain_segment", choices=("scan", "integration", "track"),
                   help="one gain per station and scan (default), integration (time stamp) or whole track "
                        "(implies --gains)")
    p.add_argument("--snapshots", metavar="SPEC",
                   help="fit one posterior per time window, all in one batch, into one store with a `snapshot` "
                        "dimension: 'scan' (one window per scan) or a window length such as 10min, 2h, 90s "
                        "(explicit [start, end] windows in hours UTC: `snapshots:` in --config); windows with "
                        "fewer than 2 closure phases or fewer data than parameters + 1 are skipped and listed")
    p.add_argument("--chains", type=int, help="NUTS chains (default 4)")
    p.add_argument("--warmup", type=int, help="warmup steps per chain (default 1000)")
    p.add_argument("--samples", type=int, help="draws kept per chain (default 2000)")
    p.add_argument("--seed", type=int, help="random seed of the start points and chains (default 0)")
    p.add_argument("--starts", type=int, help="optimiser starts used to find the modes (default 64)")
    p.add_argument("--dtype", choices=("float32", "float64"), help="numerical precision (default float64)")
    p.add_argument("--chain-method", dest="chain_method", choices=("parallel", "vectorized", "sequential"),
                   help="chains over all local devices (parallel, default), batched on one (vectorized), or one "
                        "after another (sequential)")
    p.add_argument("--host-devices", type=int, help="CPU devices to expose to JAX (default: min(chains, cores))")
    p.add_argument("--config", help="YAML/JSON fit configuration file (keys: see docs/workflow.md)")
    p.add_argument("--fit-json", help="fit configuration as a JSON string (used by the workflow)")
    p.add_argument("--epoch", help="epoch id recorded in the store (default: the data file's name)")
    p.add_argument("--source", help="source name recorded in the store (default: the file header's)")
    p.add_argument("--date", help="observing date YYYY-MM-DD recorded in the store (default: the file's)")
    p.add_argument("--band", help="band name recorded in the store (default: from the file name or frequency)")
    p.add_argument("--campaign", help="campaign name recorded in the store")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    p.add_argument("--quiet", action="store_true", help="print nothing on success (no summary, no progress)")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("fit-batch", help="fit one model to several observations in one process and one compiled "
                       "batch; write one Zarr store per observation (the workflow's batched fit jobs)")
    p.add_argument("--batch-json", required=True, metavar="JSON",
                   help='the observations as a JSON list: [{"data": FILE, "out": STORE, "epoch": ID, "source": ..., '
                        '"date": ..., "band": ...}, ...] (data and out required)')
    p.add_argument("--fit-json", required=True, metavar="JSON", help="fit configuration as a JSON string (as `fit`)")
    p.add_argument("--config", help="YAML/JSON fit configuration file, under --fit-json")
    p.add_argument("--host-devices", type=int, metavar="N",
                   help="CPU devices to expose to JAX (default: min(chains x observations, cores))")
    p.add_argument("--campaign", help="campaign name recorded in every store")
    p.add_argument("--overwrite", action="store_true", help="replace existing stores")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=cmd_fit_batch, model=None, order=None, products=None, noise=None, snr_cut=None, snapshots=None,
                   gains=False, gain_method=None, gain_segment=None,
                   **dict.fromkeys(SAMPLER_FLAGS))

    text = "print a fit store's parameters, convergence and goodness of fit"
    p = sub.add_parser("summary", help=text, description=text + ".")
    p.add_argument("store", metavar="STORE", help="fit store (Zarr directory) written by `vlbicore fit`")
    p.add_argument("--csv", metavar="FILE.csv", help="also write the parameter table as CSV here")
    p.add_argument("--plots", metavar="DIR", help="also write the per-fit plots (as `vlbicore plot`) into DIR")
    p.add_argument("--formats", default="png,svg", metavar="LIST",
                   help="image formats with --plots, a comma list of png, svg, pdf (default png,svg)")
    p.set_defaults(func=cmd_summary)

    text = "gather fit stores into cross-epoch tables and gathered.zarr (xarray + Dask)"
    p = sub.add_parser("gather", help=text, description=text + "; every store that cannot be gathered is named "
                                                              "in problems.csv (docs/gather.md).")
    p.add_argument("stores", nargs="+", metavar="STORE",
                   help="fit stores (Zarr directories), or @FILE naming one store path per line")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="directory to write summary/fits (CSV + parquet), loo.csv, problems.csv and gathered.zarr")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="address of a running Dask scheduler, e.g. tcp://10.1.2.3:8786 (default: a LocalCluster "
                        "of min(CPUs, 4) threads in this process)")
    p.add_argument("--loo-weights", default="stacking", choices=["stacking", "pseudo-BMA+"], metavar="METHOD",
                   help="model weights in loo.csv: stacking (default) or pseudo-BMA+ (Bayesian bootstrap)")
    p.set_defaults(func=cmd_gather)

    text = "trace, corner, model image, data-vs-model, normalised residual and uv-coverage plots of one fit"
    p = sub.add_parser("plot", help=text, description=text + ".")
    p.add_argument("store", metavar="STORE", help="fit store (Zarr directory) written by `vlbicore fit`")
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write the figures into")
    p.add_argument("--formats", default="png,svg", metavar="LIST",
                   help="image formats, a comma list of png, svg, pdf (default png,svg)")
    p.set_defaults(func=cmd_plot)

    text = "campaign report (HTML) from a gather directory: a section per source, a page per fit"
    p = sub.add_parser("report", help=text, description=text + ".")
    p.add_argument("gather_dir", metavar="GATHER_DIR", help="directory written by `vlbicore gather`")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="directory to write index.html, plots/ and fits/<epoch>__<model>/ into")
    p.add_argument("--fit-plots-dir", metavar="DIR",
                   help="link the per-fit plots already rendered in DIR/<epoch>/<model>/*.png (the workflow's "
                        "summary jobs) instead of drawing them (default: drawn for up to 24 fits)")
    p.add_argument("--calibration", metavar="DIR",
                   help="add the calibration section from DIR (written by `vlbicore calibrate gather`: coverage "
                        "table with binomial intervals, ECDF-difference plots)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("status", help="one screen of a campaign: done, failed, not converged, not adequate, stale "
                                      "(from the stores and Snakemake's records)")
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="the campaign's results directory (config `results:`)")
    p.add_argument("--directory", metavar="DIR",
                   help="Snakemake's working directory, holding .snakemake/ (default: the current directory if it "
                        "has one, else the nearest parent of RESULTS_DIR that does)")
    p.add_argument("--configfile", metavar="CONFIG.yaml",
                   help="the campaign config, to also count the fits never run (epochs x models)")
    p.add_argument("--limit", type=int, default=5, metavar="N", help="fits listed per state (default 5)")
    p.add_argument("--all", action="store_true", help="list every fit of each state")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("validate-config", help="check a campaign config against the schema and model names")
    p.add_argument("config", help="campaign configuration YAML")
    p.set_defaults(func=cmd_validate_config)

    p = sub.add_parser("campaign", help="campaign set-up: `vlbicore campaign init DIR_OR_GLOB` writes an epoch sheet "
                                        "and a config from the files' headers")
    campaign_sub = p.add_subparsers(dest="campaign_command", required=True)
    p = campaign_sub.add_parser("init", help="epoch sheet + campaign config from a folder or glob of uvfits files")
    p.add_argument("files", nargs="+", metavar="DIR_OR_GLOB",
                   help="directories (their *.uvfits/*.uvf files), glob patterns (quote them; ** recurses) or files")
    p.add_argument("--out", default="campaign.yaml", metavar="CONFIG.yaml",
                   help="campaign config to write (default campaign.yaml)")
    p.add_argument("--sheet", metavar="EPOCHS.tsv",
                   help="epoch sheet to write, .tsv or .csv (default: <config name>-epochs.tsv beside --out)")
    p.add_argument("--name", metavar="NAME",
                   help="campaign name recorded in every store (default: the data directory's name)")
    p.add_argument("--like", metavar="CONFIG.yaml",
                   help="copy models, products, sampler and resources from this campaign (default: the demo's)")
    p.add_argument("--force", action="store_true", help="replace an existing config or sheet")
    p.set_defaults(func=cmd_campaign_init)

    p = sub.add_parser("profile", help="Snakemake profiles shipped with vlbicore: `vlbicore profile install` makes "
                                       "`snakemake --profile gpu-cluster` work as written")
    profile_sub = p.add_subparsers(dest="profile_command", required=True)
    p = profile_sub.add_parser("install", help="put a shipped profile where `snakemake --profile NAME` looks for it")
    p.add_argument("name", nargs="?", default="gpu-cluster", help="profile to install (default gpu-cluster)")
    p.add_argument("--dir", metavar="DIR", help="install into DIR instead of Snakemake's user profile directory "
                                                "($XDG_CONFIG_HOME/snakemake, default ~/.config/snakemake)")
    p.add_argument("--site", action="store_true",
                   help="install for every user of this machine (/etc/xdg/snakemake; needs root)")
    p.add_argument("--copy", action="store_true",
                   help="copy the profile (to edit it for one site) instead of linking to vlbicore's")
    p.add_argument("--force", action="store_true", help="move an existing profile of that name aside (to NAME.bak-TIME)")
    p.set_defaults(func=cmd_profile_install)

    p = sub.add_parser("simulate", help="synthetic observation of a model, written as uvfits")
    p.add_argument("--model", required=True, help="ehtim model type name (see `vlbicore models`)")
    p.add_argument("--param", action="append", default=[], help="NAME=VALUE (repeat); beta_list as re+imj,...")
    p.add_argument("--out", required=True, help="uvfits file to write")
    p.add_argument("--array", default="EHT2017", help="array table name (EHT2017, EHT2017_m87, EHT2025) or path")
    p.add_argument("--like", help="copy the uv coverage and sigmas of this uvfits file")
    p.add_argument("--seed", type=int, default=0, help="seed of the thermal noise (default 0)")
    p.add_argument("--no-noise", action="store_true", help="write the noise-free model visibilities")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("calibrate", help="simulation-based calibration: `run` simulates and fits one batch, "
                                         "`gather` makes the coverage tables and ECDF plots")
    calibrate_sub = p.add_subparsers(dest="calibrate_command", required=True)
    p = calibrate_sub.add_parser("run", help="simulate one batch of data sets on a file's coverage, fit them all "
                                             "(one fit_many program), write their ranks and coverage as CSV")
    p.add_argument("--like", required=True, metavar="FILE.uvfits",
                   help="uvfits file whose coverage and thermal sigmas the simulations use")
    p.add_argument("--fit-json", required=True, metavar="JSON",
                   help="the fit configuration (model, products, noise, sampler, priors; as `vlbicore fit --fit-json`)")
    p.add_argument("--calibration-json", metavar="JSON",
                   help="the campaign's calibration section as JSON (n_simulations, batch_size, nonclosing, gains, "
                        "truths, seed, rank_draws); the flags below override its keys")
    p.add_argument("--prepare-json", metavar="JSON",
                   help="the campaign's prepare section as JSON (scan_average, drop_intra_site; default both true)")
    p.add_argument("--model-name", default="model", metavar="ID", help="model id recorded in the table (default model)")
    p.add_argument("--batch", type=int, required=True, metavar="K",
                   help="batch to run (0-based): simulations K*batch_size .. (K+1)*batch_size-1")
    p.add_argument("--n-simulations", dest="n_simulations", type=int, help="simulations in the whole run (default 100)")
    p.add_argument("--batch-size", dest="batch_size", type=int, help="simulations per batch (default 25)")
    p.add_argument("--nonclosing", type=float,
                   help="injected baseline-based (non-closing) error fraction per scan (default 0.05)")
    p.add_argument("--gains", type=float, help="sd of the injected log station-gain amplitudes per scan (default 0.1)")
    p.add_argument("--seed", type=int, help="seed of truths, data and fits (default 0)")
    p.add_argument("--host-devices", type=int, help="CPU devices to expose to JAX (default: min(chains, cores))")
    p.add_argument("--out", required=True, metavar="BATCH.csv", help="table to write (one row per simulation and parameter)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing table at --out")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=cmd_calibrate_run)
    p = calibrate_sub.add_parser("gather", help="batch tables -> calibration.csv, coverage.csv (binomial intervals) "
                                                "and ECDF-difference plots")
    p.add_argument("tables", nargs="+", metavar="BATCH.csv", help="tables written by `vlbicore calibrate run`")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the tables and plots")
    p.add_argument("--confidence", type=float, default=0.95,
                   help="confidence of the binomial intervals of the coverage (default 0.95)")
    p.add_argument("--method", choices=("jeffreys", "clopper-pearson"), default="jeffreys",
                   help="binomial interval: jeffreys (default) or clopper-pearson (exact, conservative)")
    p.add_argument("--no-plots", action="store_true", help="tables only, no ECDF-difference or coverage plots")
    p.set_defaults(func=cmd_calibrate_gather)

    p = sub.add_parser("models", help="list model types and their parameters")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except VlbiError as exc:
        print(f"vlbicore: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vlbicore: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0
