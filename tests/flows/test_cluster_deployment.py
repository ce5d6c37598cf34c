"""The cluster deployments of the build (deploy/prefect-cpu.yaml + deploy/dask-cluster.yaml):
the flow's Kubernetes job (Prefect's own templating) and the Dask workers mount the same data
volume at the same path, and the config's execution section points at that Dask scheduler."""

from __future__ import annotations

import importlib
import json

import yaml
from prefect.utilities.templating import apply_values, find_placeholders

from tests.conftest import REPO
from treeoflife.config import load_config

TEMPLATE = REPO / "deploy" / "kubernetes-cpu-base-job-template.json"


def _deployments() -> list[dict]:
    return yaml.safe_load((REPO / "deploy" / "prefect-cpu.yaml").read_text())["deployments"]


def _dask_cluster() -> dict:
    return yaml.safe_load((REPO / "deploy" / "dask-cluster.yaml").read_text())


def _render(job_variables: dict) -> dict:
    template = json.loads(TEMPLATE.read_text())
    props = template["variables"]["properties"]
    values = {k: v["default"] for k, v in props.items() if "default" in v}
    values.update({"name": "build", "command": "python -m prefect.engine", **job_variables})
    return apply_values(template["job_configuration"], values, remove_notset=True)


def test_every_placeholder_and_job_variable_is_declared():
    template = json.loads(TEMPLATE.read_text())
    declared = set(template["variables"]["properties"])
    assert {p.name for p in find_placeholders(template["job_configuration"])} <= declared
    for deployment in _deployments():
        assert set(deployment["work_pool"]["job_variables"]) <= declared


def test_a_deployment_per_build_flow_on_the_cpu_pool():
    deployments = _deployments()
    names = set()
    for d in deployments:
        path, name = d["entrypoint"].split(":")
        flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)
        names.add(flow.name)
        assert d["work_pool"]["name"] == "cpu" and d["name"] == "cluster"
    assert names == {"tree-of-life", "ingest", "taxonomy", "dedup", "release"}


def test_flow_job_and_dask_workers_share_the_data_volume_and_the_scheduler_address():
    job_variables = dict(_deployments()[0]["work_pool"]["job_variables"])
    job_variables["image"] = "registry.example/treeoflife:1"
    pod = _render(job_variables)["job_manifest"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.example/treeoflife:1"
    assert "nvidia.com/gpu" not in container["resources"]["requests"]
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["data"]
    claim = {v["name"]: v for v in pod["volumes"]}["data"]["persistentVolumeClaim"]["claimName"]

    cluster = _dask_cluster()
    worker = cluster["spec"]["worker"]["spec"]
    worker_mount = {m["name"]: m["mountPath"] for m in worker["containers"][0]["volumeMounts"]}
    worker_claim = {v["name"]: v for v in worker["volumes"]}["data"]["persistentVolumeClaim"]
    assert worker_mount["data"] == mount and worker_claim["claimName"] == claim

    cfg = load_config(REPO / _deployments()[0]["parameters"]["config_path"])
    assert cfg.data_root.startswith(mount + "/")  # the same absolute paths everywhere
    port = cluster["spec"]["scheduler"]["service"]["ports"][0]["port"]
    service = f"{cluster['metadata']['name']}-scheduler"  # the operator's naming
    assert cfg.execution.task_runner == "dask"
    assert cfg.execution.dask_address == f"tcp://{service}:{port}"
