"""The `execution` section: which task runner the flows fan the heavy stages out on."""

import pytest

from treeoflife.config import config_from_dict
from treeoflife.errors import ConfigError


def test_default_is_threads_and_parallelism_follows_the_runner():
    assert config_from_dict({}).execution.task_runner == "threads"
    assert config_from_dict({"execution": {"max_workers": 3}}).execution.parallelism == 3
    dask = {"task_runner": "dask", "dask_workers": 4, "dask_threads_per_worker": 2}
    assert config_from_dict({"execution": dask}).execution.parallelism == 8


@pytest.mark.parametrize(
    "section, message",
    [
        ({"task_runner": "ray"}, "execution.task_runner: 'ray' is not one of threads, dask"),
        ({"dask_workers": 0}, "execution.dask_workers: must be >= 1"),
        ({"max_workers": "4"}, "execution.max_workers: expected int"),
        ({"dask_adress": "tcp://x:8786"}, "execution: unknown key(s) dask_adress"),
    ],
)
def test_bad_execution_settings_are_rejected_naming_the_key(section, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"execution": section})
    assert message in str(err.value)
