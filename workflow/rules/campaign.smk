"""Campaign-wide rules: gather every fit store into cross-epoch tables, then the HTML report."""


localrules:
    store_list,


rule store_list:
    """The paths of every fit store, one per line: gather reads them with `@FILE`, since thousands of
    paths on one command line would pass the kernel's argument-length limit."""
    input:
        stores=all_stores(),
    output:
        f"{RESULTS}/gather-stores.txt",
    run:
        pathlib.Path(output[0]).write_text("".join(f"{path}\n" for path in input.stores))


rule gather:
    """All (epoch, model) stores -> tidy cross-epoch tables and a gathered Zarr (xarray + Dask)."""
    input:
        store_list=f"{RESULTS}/gather-stores.txt",
        stores=all_stores(),
    output:
        gathered=report(
            directory(f"{RESULTS}/gather"),
            patterns=["{table}.csv"],
            caption="../report/gather.rst",
            category="Campaign",
            subcategory="Tables",
            labels={"table": "{table}"},
        ),
    params:
        vlbicore_version=VLBICORE_VERSION,
    log:
        "logs/gather.log",
    benchmark:
        "benchmarks/gather.tsv"
    threads: rule_threads("gather")
    resources:
        **rule_resources("gather"),
    shell:
        "{PYTHON:q} -m vlbicore gather @{input.store_list:q} --out {output.gathered:q} > {log:q} 2>&1"


rule report:
    """Campaign report: results/report/index.html with the cross-epoch plots and model comparison."""
    input:
        gathered=f"{RESULTS}/gather",
        fit_plots=expand(f"{RESULTS}/plots/{{epoch}}/{{model}}", epoch=EPOCHS, model=MODELS),
        calibration=calibration_targets(),
    output:
        # (Snakemake's single-file HTML report cannot embed a whole HTML directory, so it holds the
        # campaign plots; the full vlbicore report is results/report/index.html)
        report_dir=report(
            directory(f"{RESULTS}/report"),
            patterns=["plots/{plot}.png"],
            caption="../report/campaign.rst",
            category="Campaign",
            subcategory="Plots",
            labels={"plot": "{plot}"},
        ),
    params:
        calibration=lambda wildcards, input: [f"--calibration={path}" for path in input.calibration],
        vlbicore_version=VLBICORE_VERSION,
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/report.tsv"
    threads: rule_threads("report")
    resources:
        **rule_resources("report"),
    shell:
        "{PYTHON:q} -m vlbicore report {input.gathered:q} --fit-plots-dir {RESULTS:q}/plots"
        " {params.calibration:q} --out {output.report_dir:q} > {log:q} 2>&1"
