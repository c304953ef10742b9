"""Shared fixtures: every test gets its own DETBENCH_HOME and runs offline on one CPU thread; tiny backbone weights; a
torch.distributed rendezvous without port races."""

from __future__ import annotations

import functools
import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.testing

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One intra-op thread, here and in every subprocess (read when torch or numpy's BLAS starts): the tests' networks
# and arrays are tiny, so a second thread gains nothing, and on a busy machine its synchronisation spins, making
# steps many times slower. Set OMP_NUM_THREADS to run them with more.
os.environ.setdefault("OMP_NUM_THREADS", "1")


# The cyclic garbage collector's young collections every 5000 net allocations instead of 700 (Python 3.13's default
# is 2000): with 700, a test process spent about 7 % of its CPU time in the collector, mostly in full collections
# that rescan torch, pandas and detbench (see pytest_collection_finish). Garbage is still collected, a little later.
gc.set_threshold(5000, 10, 10)


# typer's CliRunner.invoke builds the command-line tree of the app anew on every call (about 15 ms of reading every
# command's signature and type hints); the app never changes in a test process, so it is built once per app.
# The helper is private to typer: where a version lacks it, invoke keeps building the tree on every call.
if hasattr(typer.testing, "_get_command"):
    typer.testing._get_command = functools.cache(typer.testing._get_command)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Leave what collection loaded (torch, pandas, detbench, the test modules: objects that live as long as the
    process) out of the garbage collector's scans."""
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session", autouse=True)
def torch_threads() -> None:
    """torch's intra-op threads as OMP_NUM_THREADS says (also when torch was imported before this file)."""
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


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
def small_demo_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home's ``demo`` folder holding the small demo build (``cli_helpers.SMALL``), built once per test process.
    Shared and read-only: a test home gets its own copy through ``cli_helpers.with_small_demo``."""
    from cli_helpers import SMALL_SETTINGS

    from detbench.config import apply_overrides
    from detbench.registry import SUITES

    template = tmp_path_factory.mktemp("small_demo_template")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DETBENCH_HOME", str(template))
        cls = SUITES.get("demo")
        cls(apply_overrides(cls.Options(), SMALL_SETTINGS)).default_root()
    return template / "demo"


@pytest.fixture(scope="session")
def small_demo_home(tmp_path_factory: pytest.TempPathFactory, small_demo_tree: Path):
    """A DETBENCH_HOME shared by the predict and report tests, so their small demo run is trained once."""
    from cli_helpers import with_small_demo

    return with_small_demo(tmp_path_factory.mktemp("small_demo_home"), small_demo_tree)


@pytest.fixture
def torchrun_env() -> Iterator[dict[str, str]]:
    """Environment for processes that join one torch.distributed group (add RANK, WORLD_SIZE, LOCAL_RANK).

    This process holds the rendezvous store on a port the OS picked and keeps it open while the test runs;
    the ranks connect to it as clients (as under torchrun, whose agent owns the store), so no port is chosen,
    released and then raced for.
    """
    from datetime import timedelta

    import torch.distributed as tdist

    store = tdist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=120))
    yield {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(store.port),
        "TORCHELASTIC_USE_AGENT_STORE": "True",
        "TORCHELASTIC_RESTART_COUNT": "0",
    }
    del store


@pytest.fixture(scope="session")
def tiny_vit_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seeded random weights of detbench's tiny CLIP ViT (visual tower, 64-d projected embedding), as safetensors.
    Use it as ``open_clip:detbench-tiny-vit@<file>``; random weights, never presented as pretrained."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    from detbench.models.backbones import register_tiny_models

    root = tmp_path_factory.mktemp("tiny_vit")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DETBENCH_HOME", str(root / "home"))
        register_tiny_models()
        torch.manual_seed(3)
        clip = open_clip.create_model("detbench-tiny-vit")
    save_file(clip.visual.state_dict(), root / "tiny.safetensors")
    return root / "tiny.safetensors"


@pytest.fixture(scope="session")
def hub_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """``(path, state dict)``: random DINOv2 ViT-S/14 weights saved as torch.hub's ``dinov2_vits14_pretrain.pth``
    (tests/dinov2_reference.py), written once per test process for the RIGID and MINDER tests. Shared and
    read-only: no test changes the file, its folder or the state dict."""
    from dinov2_reference import write_hub_checkpoint

    return write_hub_checkpoint(tmp_path_factory.mktemp("dinov2"))
