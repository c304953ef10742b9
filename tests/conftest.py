"""Shared fixtures: every test gets its own DETBENCH_HOME and runs offline."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def detbench_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path_factory.mktemp("detbench_home")
    monkeypatch.setenv("DETBENCH_HOME", str(home))
    return home


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def small_demo_home(tmp_path_factory: pytest.TempPathFactory):
    """A DETBENCH_HOME shared by the predict and report tests, so their small demo run is trained once."""
    return tmp_path_factory.mktemp("small_demo_home")
