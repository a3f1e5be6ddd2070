# CRANE-repro workflow: raw Amazon data -> features -> graphs -> runs -> paper tables.
# Thin rules over the `crane` library: the job grid comes from crane/study.py, every path from
# crane/layout.py, and each job's code inputs from the imports of what it runs
# (crane/code_inputs.py), so editing a module reruns exactly the jobs that run it.
#   snakemake --cores all                                  # the embedded demo (config/config.yaml)
#   snakemake --cores all --configfile config/paper.yaml   # the full study
from snakemake.utils import min_version

min_version("9.0")


# The demo config unless config files are given on the command line: each config file is
# complete on its own, so `--configfile config/paper.yaml` does not inherit the demo dataset.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# The report's landing text: where the results are.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"


# One workflow writes a results folder at a time: a second checkout pointing at the same
# folder stops before its first job (crane/results_lock.py). Dry runs take no lock.
onstart:
    results_lock.acquire(R, workflow.basedir)


onsuccess:
    results_lock.release(R, workflow.basedir)


onerror:
    results_lock.release(R, workflow.basedir)


rule all:
    input:
        rules.tables.output,
    default_target: True
