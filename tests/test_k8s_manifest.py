"""docs/k8s-indexed-job.yaml: valid YAML, an Indexed Job, and a worker command line that the real parser takes."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from search.cli import build_parser

MANIFEST = Path(__file__).resolve().parent.parent / "docs" / "k8s-indexed-job.yaml"


def test_manifest_is_an_indexed_job_of_alexsearch_workers():
    docs = list(yaml.safe_load_all(MANIFEST.read_text()))
    assert len(docs) == 1
    job = docs[0]
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 4
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] in ("OnFailure", "Never")  # the two an Indexed Job allows
    (container,) = pod["containers"]
    assert container["command"] == ["alexsearch"]
    args = container["args"]
    assert args[0] == "worker" and args[args.index("--worker-index") + 1] == "$(JOB_COMPLETION_INDEX)"
    assert args[args.index("--storage") + 1] == "$(ALEXSEARCH_STORAGE)"
    env = {e["name"]: e for e in container["env"]}
    assert env["ALEXSEARCH_STORAGE"]["valueFrom"]["secretKeyRef"] == {"name": "alexsearch-db", "key": "url"}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert {v["name"] for v in pod["volumes"]} == set(mounts)
    assert args[args.index("--artifacts") + 1].startswith(mounts["shared"] + "/")
    assert args[args.index("--data") + 1] == mounts["data"]


def test_manifest_worker_args_parse_as_the_worker_would():
    container = yaml.safe_load(MANIFEST.read_text())["spec"]["template"]["spec"]["containers"][0]
    values = {"JOB_COMPLETION_INDEX": "3", "ALEXSEARCH_STORAGE": "postgresql+psycopg://u@db:5432/alexsearch"}
    argv = [re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], a) for a in container["args"]]
    args = build_parser().parse_args(argv)
    assert (args.command, args.worker_index, args.study, args.trials, args.device) == (
        "worker",
        3,
        "cifar",
        200,
        "cuda",
    )
