"""vlbicore campaign workflow: every epoch (uvfits) x every model of config/config.yaml.

    prepare (per epoch) -> fit (per epoch x model) -> summary + plot_fit (per fit)
                                                   -> gather (all fits) -> report
    calibrate (per model x batch of simulations) -> calibration_gather -> report   (with `calibration:`)

Run from the repository root: ``snakemake --cores 2`` (demo: M87* 2017), or
``snakemake --cores 2 --configfile my-campaign.yaml`` (``vlbicore campaign init DIR`` writes one); on SLURM
``snakemake --profile gpu-cluster`` after ``vlbicore profile install``.
Rules call the ``vlbicore`` command line with the Python running Snakemake. See docs/workflow.md.
"""
from snakemake.utils import min_version

min_version("9.27")


include: "workflow/rules/common.smk"
include: "workflow/rules/locks.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/calibration.smk"
include: "workflow/rules/campaign.smk"


localrules:
    all,


rule all:
    """The whole campaign: report, and every fit's store, summary and plots. The stores are targets
    themselves: a missing store is refitted even when everything downstream of it is still present."""
    input:
        f"{RESULTS}/report",
        all_stores(),
        expand(f"{RESULTS}/summary/{{epoch}}/{{model}}.csv", epoch=EPOCHS, model=MODELS),
        expand(f"{RESULTS}/plots/{{epoch}}/{{model}}", epoch=EPOCHS, model=MODELS),
        calibration_targets(),
    default_target: True
