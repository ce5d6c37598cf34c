"""The GPU deployments of `train`/`evaluate` (deploy/prefect-gpu.yaml): their job variables
fill the Kubernetes base job template (rendered with Prefect's own templating) into a job that
requests the GPUs, mounts the data volume and a large /dev/shm, and keeps the hub offline."""

from __future__ import annotations

import json

import yaml
from prefect.utilities.templating import apply_values, find_placeholders

from tests.conftest import REPO

TEMPLATE = REPO / "deploy" / "kubernetes-gpu-base-job-template.json"


def _gpu_deployments() -> dict[str, dict]:
    spec = yaml.safe_load((REPO / "deploy" / "prefect-gpu.yaml").read_text())
    return {d["entrypoint"]: d for d in spec["deployments"] if d["work_pool"]["name"] == "gpu"}


def _render(job_variables: dict) -> dict:
    template = json.loads(TEMPLATE.read_text())
    props = template["variables"]["properties"]
    defaults = {k: v["default"] for k, v in props.items() if "default" in v}
    values = {**defaults, "name": "train-run", "command": "python -m prefect.engine"}
    values.update(job_variables)
    return apply_values(template["job_configuration"], values, remove_notset=True)


def test_every_placeholder_and_job_variable_is_declared():
    template = json.loads(TEMPLATE.read_text())
    declared = set(template["variables"]["properties"])
    used = {p.name for p in find_placeholders(template["job_configuration"])}
    assert used <= declared, used - declared
    for deployment in _gpu_deployments().values():
        assert set(deployment["work_pool"]["job_variables"]) <= declared


def test_the_default_prefect_yaml_needs_no_gpu_pool():
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert {d["work_pool"]["name"] for d in spec["deployments"]} == {"local"}


def test_train_job_requests_eight_gpus_and_evaluate_one():
    deployments = _gpu_deployments()
    assert set(deployments) == {"flows/train.py:train", "flows/evaluate.py:evaluate"}
    for entrypoint, gpus in (("flows/train.py:train", 8), ("flows/evaluate.py:evaluate", 1)):
        variables = dict(deployments[entrypoint]["work_pool"]["job_variables"])
        variables["image"] = "registry.example/treeoflife:1"
        job = _render(variables)["job_manifest"]
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == gpus
        assert container["resources"]["requests"]["nvidia.com/gpu"] == gpus
        assert container["image"] == "registry.example/treeoflife:1"
        assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
        assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
        assert container["env"]["HF_HUB_OFFLINE"] == "1"
        assert deployments[entrypoint]["parameters"]["config_path"] == "configs/tol10m.yaml"


def test_the_cluster_config_trains_on_as_many_processes_as_gpus():
    from treeoflife.config import load_config

    cfg = load_config(REPO / "configs" / "tol10m.yaml")
    gpus = _gpu_deployments()["flows/train.py:train"]["work_pool"]["job_variables"]["gpus"]
    assert cfg.train.nproc_per_node == gpus
    assert cfg.train.batch_size * cfg.train.nproc_per_node == 32768  # BioCLIP's global batch
    assert cfg.data_root.startswith("/data/")
