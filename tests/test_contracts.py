"""Contract tests over the registries: every registered detector and suite keeps the promises the runner relies on.

A new detector is covered by registering it (a ``REGISTRATION`` in its module, or an entry point) and giving its
class ``tiny_settings`` (what makes it run in seconds on 32-pixel images); a new suite by a generated replica of
its layout in ``tests/replicas.py``. The template detector of the plugin guide (``docs/templates``) is registered
here and passes the same tests, so the guide cannot drift from the contract.

Detector contract:
- its config survives a round trip through ``--set`` strings, and its defaults validate;
- it fits on a tiny tree (a ``folder`` suite with a training generator and an unseen one) through the Python API,
  scores every evaluation image with a P(fake) in [0, 1] (or NaN with a reason; a detector whose scores are no
  probabilities says so with ``probability_scores = False``);
- a fresh instance that loads the saved state scores the same images identically (deterministic, save/load);
- a damaged state (unreadable files, or an unexpected extra tensor) is refused with a ``DetbenchError``;
- its run records a cost: parameters and FLOPs per image when it names its scoring forward, else n/a with a reason.

Suite contract: it scans a generated replica of its layout into exactly the expected index rows; its default
protocol and ``eval`` exist; in-suite protocols train on generators it has; its default backbone and evaluation
convention are valid names.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from replicas import REPLICAS

import detbench
from detbench.config import apply_overrides, field_paths, to_dict
from detbench.data.index import build_index
from detbench.data.suites import EVAL_CONVENTIONS, Suite
from detbench.engine.layout import fit_dir
from detbench.errors import DetbenchError
from detbench.kit.detector import Detector, RunContext
from detbench.models.features import FeatureCache
from detbench.models.spec import parse_spec
from detbench.progress import Phases
from detbench.registry import DETECTORS, SUITES, read_registration
from detbench.results.predict import load_trained

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "docs" / "templates"


def _register_template(registry, file: Path) -> str:
    """Import one of the guide's templates and register it the way a plugin would be."""
    facts = read_registration(file)
    assert facts is not None
    name = facts["name"]
    if name not in registry:
        spec = importlib.util.spec_from_file_location(f"detbench_template_{file.stem}", file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        registry.register(name, facts["summary"])(getattr(module, facts["class"]))
    return name


_register_template(DETECTORS, TEMPLATES / "colour_stats.py")
_register_template(SUITES, TEMPLATES / "split_collection.py")
DETECTOR_NAMES = DETECTORS.names()
IMPORTED = "external"  # scores come from a file: the contract test writes one


def _image(rng: np.random.Generator, fake: bool, shift: int) -> Image.Image:
    """Smooth gradients with mild noise (real) or the same with a colour cast and a checkerboard (fake)."""
    y, x = np.mgrid[0:32, 0:32]
    base = np.stack([x * 4 + shift, y * 4, (x + y) * 2 + 40], axis=-1).astype(np.float64)
    base += rng.normal(0, 6, base.shape)
    if fake:
        base[..., 0] += 60
        base += 25 * ((x + y) % 2)[..., None]
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train/seen`` and ``test/{seen,unseen}``, each with 0_real and 1_fake (12 / 6 images per class)."""
    root = tmp_path_factory.mktemp("tiny_tree")
    rng = np.random.default_rng(0)
    for split, generator, n in (("train", "seen", 12), ("test", "seen", 6), ("test", "unseen", 6)):
        for label in (0, 1):
            folder = root / split / generator / ("1_fake" if label else "0_real")
            folder.mkdir(parents=True)
            for i in range(n):
                _image(rng, bool(label), shift=3 * i).save(folder / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def contract_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One DETBENCH_HOME for the contract tests of this module (the tiny tree is indexed once)."""
    return tmp_path_factory.mktemp("contract_home")


def _settings(name: str, root: Path) -> dict[str, object]:
    cls = DETECTORS.get(name)
    settings = dict(cls.tiny_settings)
    if name == IMPORTED:
        settings = {"file": str(_score_file(root)), "name": "contract"}
    return settings


def _score_file(root: Path) -> Path:
    path = root.parent / f"{root.name}_scores.csv"
    if not path.exists():
        files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png") if p.parts[-4] == "test")
        scores = [0.8 if "/1_fake/" in f else 0.3 for f in files]
        pd.DataFrame({"path": files, "score": scores}).to_csv(path, index=False)
    return path


def _run(name: str, root: Path, home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DETBENCH_HOME", str(home))
    if name == IMPORTED:
        settings = _settings(name, root)
        return detbench.import_scores("folder", settings.pop("file"), root=root, name=str(settings["name"]),
                                      protocol="train-on-seen", bootstrap=0)
    return detbench.run(name, "folder", root=root, protocol="train-on-seen", settings=_settings(name, root),
                        bootstrap=0, workers=0)


def _context(run: detbench.Run, tmp_path: Path) -> RunContext:
    record = run.record
    return RunContext(suite_root=Path(record["paths"]["suite_root"]), suite_name=record["suite"], device="cpu",
                      seed=0, run_dir=tmp_path / "ctx", phases=Phases(enabled=False, warnings=False), workers=0,
                      feature_cache=FeatureCache(tmp_path / "features"))  # computed afresh, not read back


def test_every_shipped_plugin_is_registered():
    """Every plugin module under detectors/ and datasets/ with a REGISTRATION is listed (and nothing else is)."""
    for folder, registry in (("detectors", DETECTORS), ("datasets", SUITES)):
        stated = {facts["name"] for p in (ROOT / folder).glob("*.py") if (facts := read_registration(p))}
        assert stated and stated <= set(registry.names())


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_config_round_trips_through_set_strings(name: str):
    cls = DETECTORS.get(name)
    assert issubclass(cls, Detector) and cls.name == name and cls.Config is not None
    default = cls.Config()
    flat = field_paths(default)
    values = to_dict(default)

    def lookup(key: str) -> object:
        node: object = values
        for part in key.split("."):
            node = node[part]  # type: ignore[index]
        return node

    as_strings = {key: (",".join(map(str, v)) if isinstance(v := lookup(key), (list, tuple)) else str(v))
                  for key in flat}
    assert apply_overrides(default, as_strings) == default
    apply_overrides(default, dict(cls.tiny_settings))  # the tiny settings are valid settings


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_default_tiles_are_valid_settings(name: str):
    """A detector's own tile policy (``default_tiles`` / ``default_fuse``) is a valid eval.tiles / eval.fuse, and
    no configuration key shadows the run-level eval.* settings."""
    from detbench.engine.resolve import EVAL_PREFIX, resolve_tiling

    cls = DETECTORS.get(name)
    assert not any(key.startswith(EVAL_PREFIX) for key in field_paths(cls.Config()))
    tiling, chosen_by = resolve_tiling(cls, {})
    assert (tiling is None) == (cls.default_tiles is None) and (chosen_by is None) == (tiling is None)


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_fits_scores_and_reloads_identically(name, tiny_tree, contract_home, tmp_path, monkeypatch):
    cls = DETECTORS.get(name)
    run = _run(name, tiny_tree, contract_home, monkeypatch)
    scores = run.scores
    evaluated = scores[scores["generator"].isin(["seen", "unseen"])]
    assert len(evaluated) == 24 and set(evaluated["generator"]) == {"seen", "unseen"}
    p = evaluated["score"].to_numpy(dtype=np.float64)
    finite = np.isfinite(p)
    assert finite.any()
    if cls.probability_scores:
        assert ((p[finite] >= 0) & (p[finite] <= 1)).all()
    assert (evaluated.loc[~finite, "status"] != "ok").all(), "an unscored image must carry its reason"

    ctx = _context(run, tmp_path)
    if name == IMPORTED:  # no model to reload: its scores are read from the file again
        fresh = cls(apply_overrides(cls.Config(), _settings(name, tiny_tree)))
        fresh.setup(ctx)
    else:  # as detbench predict reloads a run: its config, set up, and its fit's state when it stored one
        fresh = load_trained(run.id, ctx).detector
    index = detbench.index("folder", root=tiny_tree)
    rows = index[index["path"].isin(evaluated["path"]) & (index["status"] == "ok")].sort_values("path")
    rows = rows.reset_index(drop=True)
    again, _ = fresh.predict(rows, ctx)
    expected = evaluated.set_index("path").loc[rows["path"], "score"].to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(np.asarray(again, dtype=np.float64), expected)


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_records_its_cost_or_why_not(name, tiny_tree, contract_home, monkeypatch):
    """Every run records its cost: each value a finite number, or None with the reason under ``na``; a detector that
    names its scoring forward (the kit's bases do) has its parameters and FLOPs per image counted."""
    from detbench.engine.cost import COST_FIELDS

    cost = _run(name, tiny_tree, contract_home, monkeypatch).record["cost"]
    for field in COST_FIELDS:
        value = cost[field]
        if value is None:
            assert cost["na"][field].strip(), f"{name}: {field} is n/a without a reason"
        else:
            assert isinstance(value, int | float) and np.isfinite(value) and value >= 0 and field not in cost["na"]
    assert cost["images_per_s"] > 0 and cost["peak_memory_bytes"] > 0 and cost["machine"]["device"] == "cpu"
    if DETECTORS.get(name).cost_forward is not Detector.cost_forward and name != IMPORTED:
        assert cost["params"] > 0 and cost["gflops_per_image"] > 0, cost["na"]
    else:
        assert cost["params"] is None and cost["gflops_per_image"] is None


def _damaged_copies(state: Path, tmp_path: Path) -> list[Path]:
    """Copies of a saved state: every file overwritten with bytes no loader accepts, and (where the state holds
    safetensors files) one extra tensor added to each."""
    copies = []
    garbage = tmp_path / "garbage"
    shutil.copytree(state, garbage)
    for path in garbage.rglob("*"):
        if path.is_file():
            path.write_bytes(b"\x00not a state file\xff")
    copies.append(garbage)
    tensors = sorted(state.rglob("*.safetensors"))
    if tensors:
        from safetensors.torch import load_file, save_file

        extra = tmp_path / "extra"
        shutil.copytree(state, extra)
        for path in extra.rglob("*.safetensors"):
            content = load_file(path)
            content["unexpected.weight"] = next(iter(content.values())).clone()
            save_file(content, path)
        copies.append(extra)
    return copies


@pytest.mark.parametrize("name", [n for n in DETECTOR_NAMES if n != IMPORTED])
def test_a_damaged_state_is_refused(name, tiny_tree, contract_home, tmp_path, monkeypatch):
    run = _run(name, tiny_tree, contract_home, monkeypatch)  # reused from the test above when it ran first
    if run.record["fit"].get("stored") is False:
        pytest.skip(f"{name} trains nothing on this tree, so its runs keep no state to damage")
    state = fit_dir(run.record["suite"], run.record["detector"], run.record["fit_id"]) / "state"
    cls = DETECTORS.get(name)
    for damaged in _damaged_copies(state, tmp_path):
        fresh = cls(apply_overrides(cls.Config(), _settings(name, tiny_tree)))
        fresh.setup(_context(run, tmp_path))
        with pytest.raises(DetbenchError):
            fresh.load(damaged)


SUITE_NAMES = sorted({SUITES.get(name).name for name in SUITES.names()})  # aliases name the same suite


def _rows(frame: pd.DataFrame) -> Counter:
    columns = ["path", "generator", "split", "label", "status"]
    return Counter(tuple(row) for row in frame[columns].itertuples(index=False, name=None))


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_suite_scans_a_replica_of_its_layout(name: str, tmp_path: Path):
    cls = SUITES.get(name)
    assert issubclass(cls, Suite) and isinstance(cls.version, int)
    parse_spec(cls.default_backbone)
    assert cls.eval_convention is None or cls.eval_convention in EVAL_CONVENTIONS
    builder, options = REPLICAS.get(name, (None, {}))
    suite = cls(apply_overrides(cls.Options(), options))
    if suite.builds_own_root():
        assert name not in REPLICAS  # its own data is built and tested where it is built
        return
    assert name in REPLICAS, f"add a builder of a {name} replica to REPLICAS in tests/replicas.py"
    assert builder is not None
    replica = builder(tmp_path / "root")
    index = build_index(suite, replica.root)
    assert _rows(index.rows) == Counter(replica.expected)
    protocols = suite.all_protocols(index.generators)
    assert suite.default_protocol in protocols or suite.default_protocol.startswith("train-on-")
    assert "eval" in protocols and all(p.name == key for key, p in protocols.items())


@pytest.mark.parametrize("name", [n for n in DETECTOR_NAMES if DETECTORS.get(n).profile_defaults.get("small")])
def test_the_demo_profile_is_what_a_demo_run_is_planned_with(name: str) -> None:
    """Every setting a detector's ``small`` profile (the demo's) names reaches the planned config, a backbone of ""
    (no backbone: train from random) included, which the suite's default backbone must not replace."""
    from detbench.engine.resolve import RunRequest, resolve

    profile = DETECTORS.get(name).profile_defaults["small"]
    config = resolve(RunRequest(name, "demo")).config
    reference = apply_overrides(type(config)(), profile)
    for key in profile:
        planned, wanted = config, reference
        for part in key.split("."):
            planned, wanted = getattr(planned, part), getattr(wanted, part)
        assert planned == wanted, f"{name}: {key} is {planned!r}, the demo profile says {wanted!r}"
