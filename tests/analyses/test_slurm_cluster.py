"""The README's dask-jobqueue example: its SLURMCluster arguments are valid and give the intended batch script
(no SLURM needed until jobs are submitted)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_documented_slurm_cluster_builds_its_job_script():
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    call = re.search(r"cluster = (SLURMCluster\(.*\))\n", README.read_text()).group(1)
    arguments = {keyword.arg: ast.literal_eval(keyword.value) for keyword in ast.parse(call).body[0].value.keywords}
    with dask_jobqueue.SLURMCluster(**arguments, scheduler_options={"dashboard_address": ":0"}) as cluster:
        script = cluster.job_script()
    assert "#SBATCH -p cpu" in script and "#SBATCH -A mylab" in script and "#SBATCH -t 02:00:00" in script
    assert "--nthreads 1" in script and "--nworkers 8" in script  # 8 single-threaded workers per job
