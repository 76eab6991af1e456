"""Calibration mode (config `calibration:`): simulate and fit batches of synthetic data sets on the
coverage of a real file, then gather ranks, interval coverage and ECDF-difference plots.

    calibrate (per model x batch: one fit_many program) -> calibration_gather -> results/calibration/

Run it alone with `snakemake calibration`; `snakemake` (rule all) includes it when the section exists,
and the campaign report then shows its coverage table and plots. See docs/workflow.md.
"""

CALIBRATION_MODELS = campaign.calibration_models(config)
CALIBRATION_BATCHES = campaign.calibration_batches(config)


def calibration_tables() -> list:
    return expand(f"{RESULTS}/calibration/batches/{{model}}/{{batch}}.csv", model=CALIBRATION_MODELS,
                  batch=CALIBRATION_BATCHES)


def calibration_json() -> str:
    """`--calibration-json`: the section with defaults filled in (canonical, so the params trigger sees
    only real changes)."""
    return json.dumps(campaign.calibration_settings(config), sort_keys=True, separators=(",", ":"))


def prepare_json() -> str:
    return json.dumps(config.get("prepare", {}), sort_keys=True, separators=(",", ":"))


def calibration_targets() -> list:
    return [f"{RESULTS}/calibration/gathered"] if CALIBRATION_MODELS else []


localrules:
    calibration,


rule calibration:
    """Target: the whole calibration (nothing when the config has no `calibration:` section)."""
    input:
        calibration_targets(),


rule calibrate:
    """One batch of simulations of one model: truths, synthetic data on the `like` file's coverage, one
    fit_many program for all of them -> one table (ranks, PIT, 50/68/95 % coverage), written atomically."""
    input:
        like=lambda wildcards: config["calibration"]["like"],
    output:
        table=f"{RESULTS}/calibration/batches/{{model}}/{{batch}}.csv",
    params:
        fit=lambda wildcards: fit_json(wildcards.model),
        calibration=calibration_json(),
        prepare=prepare_json(),
        vlbicore_version=VLBICORE_VERSION,
    log:
        "logs/calibrate/{model}/{batch}.log",
    benchmark:
        "benchmarks/calibrate/{model}/{batch}.tsv"
    threads: rule_threads("calibrate")
    resources:
        **rule_resources("calibrate"),
    wildcard_constraints:
        batch="[0-9]+",
    shell:
        "{PYTHON:q} -m vlbicore calibrate run --like {input.like:q} --fit-json {params.fit:q}"
        " --calibration-json {params.calibration:q} --prepare-json {params.prepare:q}"
        " --model-name {wildcards.model:q} --batch {wildcards.batch} --host-devices {threads}"
        " --out {output.table:q} --overwrite --quiet > {log:q} 2>&1"


rule calibration_gather:
    """Every batch table -> calibration.csv, coverage.csv (binomial intervals) and the ECDF-difference
    and coverage plots."""
    input:
        tables=calibration_tables(),
    output:
        gathered=report(
            directory(f"{RESULTS}/calibration/gathered"),
            patterns=["plots/{plot}.png"],
            caption="../report/calibration.rst",
            category="Calibration",
            labels={"plot": "{plot}"},
        ),
    params:
        vlbicore_version=VLBICORE_VERSION,
    log:
        "logs/calibration_gather.log",
    benchmark:
        "benchmarks/calibration_gather.tsv"
    threads: rule_threads("calibration_gather")
    resources:
        **rule_resources("calibration_gather"),
    shell:
        "{PYTHON:q} -m vlbicore calibrate gather {input.tables:q} --out {output.gathered:q} > {log:q} 2>&1"
