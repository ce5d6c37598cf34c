"""Flow `evaluate`: zero-shot and few-shot accuracy of a model on every packaged evaluation set.

The model defaults to the run's exported `local-dir:` folder (else its newest checkpoint);
`model` takes any open_clip model (`local-dir:DIR`, `hf-hub:ORG/REPO` on a machine that has it
cached, or a model name with `checkpoint`). Results accumulate per model under the evaluate
output folder, with one BioCLIP-style table over all of them.
"""

from __future__ import annotations

from prefect import flow, task

from flows._common import LogProgress, load


@task(name="zero-and-few-shot")
def evaluate_model(
    config_path: str,
    data_root: str | None,
    checkpoint: str | None,
    name: str,
    model: str | None,
    label: str | None,
) -> dict:
    from treeoflife.evaluation.stage import run_evaluate  # torch: only where evaluation runs

    return run_evaluate(
        load(config_path, data_root),
        checkpoint,
        name=name,
        model=model,
        label=label,
        progress=LogProgress(),
    )


@flow(name="evaluate")
def evaluate(
    config_path: str = "configs/sample.yaml",
    data_root: str | None = None,
    checkpoint: str | None = None,
    name: str = "run",
    model: str | None = None,
    label: str | None = None,
) -> dict:
    return evaluate_model(config_path, data_root, checkpoint, name, model, label)


if __name__ == "__main__":
    evaluate()
