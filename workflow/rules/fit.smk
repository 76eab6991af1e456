"""Per-epoch and per-fit rules: prepare one uvfits, fit one (epoch, model), summarise and plot one fit."""


rule prepare:
    """uvfits -> flagged, scan-averaged observation (.npz). Snakemake records the input's sha256, so
    touching a file without changing its bytes reruns nothing (see docs/workflow.md)."""
    input:
        uvfits=lambda wildcards: EPOCHS[wildcards.epoch]["uvfits"],
    output:
        prepared=f"{RESULTS}/prepared/{{epoch}}.npz",
    params:
        flags=prepare_flags(),
        vlbicore_version=VLBICORE_VERSION,
    log:
        "logs/prepare/{epoch}.log",
    benchmark:
        "benchmarks/prepare/{epoch}.tsv"
    threads: rule_threads("prepare")
    resources:
        **rule_resources("prepare"),
    shell:
        "{PYTHON:q} -m vlbicore prepare {input.uvfits:q} --out {output.prepared:q} {params.flags} > {log:q} 2>&1"


rule fit:
    """One model fitted to one epoch -> one Zarr store. The store is written to a temporary path and
    renamed when complete, so a killed job never leaves a store that looks finished. Models with
    `batch: N` (N > 1) are fitted by the batch rules below instead."""
    wildcard_constraints:
        model=unbatched_model_pattern(),
    input:
        prepared=f"{RESULTS}/prepared/{{epoch}}.npz",
    output:
        store=directory(f"{RESULTS}/fits/{{epoch}}/{{model}}.zarr"),
    params:
        # the model's whole fit configuration: editing one model's priors/sampler reruns only its fits
        fit=lambda wildcards: fit_json(wildcards.model),
        epoch=lambda wildcards: epoch_flags(wildcards.epoch),
        vlbicore_version=VLBICORE_VERSION,
    log:
        "logs/fit/{epoch}/{model}.log",
    benchmark:
        "benchmarks/fit/{epoch}/{model}.tsv"
    threads: rule_threads("fit")
    resources:
        **rule_resources("fit"),
    shell:
        "{PYTHON:q} -m vlbicore fit {input.prepared:q} --out {output.store:q} --epoch {wildcards.epoch:q}"
        " --fit-json {params.fit:q} {params.epoch:q} --host-devices {threads} --quiet > {log:q} 2>&1"


for _model, _index, _epochs in fit_batches():

    rule:
        """Several epochs of one model (`batch: N`) fitted in one process and one compiled batch -> one
        Zarr store per epoch, each written atomically (see docs/workflow.md for the trade-off)."""
        name:
            batch_rule_name(_model, _index)
        input:
            prepared=[prepared_path(epoch) for epoch in _epochs],
        output:
            stores=[directory(store_path(epoch, _model)) for epoch in _epochs],
        params:
            fit=fit_json(_model),
            batch=batch_json(_model, _epochs),
            campaign=campaign_flags(),
            vlbicore_version=VLBICORE_VERSION,
        log:
            f"logs/fit/batches/{_model}/{_index}.log",
        benchmark:
            f"benchmarks/fit/batches/{_model}/{_index}.tsv"
        threads: rule_threads("fit")
        resources:
            **rule_resources("fit"),
        shell:
            "{PYTHON:q} -m vlbicore fit-batch --batch-json {params.batch:q} --fit-json {params.fit:q}"
            " {params.campaign:q} --host-devices {threads} --quiet > {log:q} 2>&1"


rule summary:
    """Parameter table (CSV, in the Snakemake report), the printed summary, and the trace, corner, model
    image, residual and uv-coverage plots (PNG) of one fit: one job, so one Python start-up and one store
    read per fit (these were two jobs; the start-ups were a third of the campaign's non-fit time)."""
    input:
        store=f"{RESULTS}/fits/{{epoch}}/{{model}}.zarr",
    output:
        table=report(
            f"{RESULTS}/summary/{{epoch}}/{{model}}.csv",
            caption="../report/summary.rst",
            category="Fit summaries",
            subcategory="{model}",
            labels={"epoch": "{epoch}", "model": "{model}"},
        ),
        text=f"{RESULTS}/summary/{{epoch}}/{{model}}.txt",
        plots=report(
            directory(f"{RESULTS}/plots/{{epoch}}/{{model}}"),
            patterns=["{name}.png"],
            caption="../report/plot_fit.rst",
            category="Fit plots",
            subcategory="{model}",
            labels={"epoch": "{epoch}", "model": "{model}", "plot": "{name}"},
        ),
    params:
        vlbicore_version=VLBICORE_VERSION,
    log:
        "logs/summary/{epoch}/{model}.log",
    benchmark:
        "benchmarks/summary/{epoch}/{model}.tsv"
    threads: rule_threads("summary")
    resources:
        **rule_resources("summary"),
    shell:
        # PNG only: the reports embed PNGs, and SVGs would double the plotting time of a campaign
        "{PYTHON:q} -m vlbicore summary {input.store:q} --csv {output.table:q} --plots {output.plots:q}"
        " --formats png > {output.text:q} 2> {log:q}"
