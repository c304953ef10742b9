"""NS-Net reconstruction: what the paper fixes (null-space projection, contrastive loss, frozen CLIP, the head as the
only state) and the open choices as settings."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from detbench.config import ConfigError, apply_overrides
from detbench.detectors.ns_net import (
    COCO_CLASSES,
    NSNet,
    NSNetConfig,
    NullConfig,
    TextConfig,
    ns_net_loss,
    null_project,
    prompts,
    semantic_basis,
    supcon_loss,
)
from detbench.errors import BackboneError
from detbench.kit.detector import RunContext
from detbench.models.backbones import load_text_tower
from detbench.models.weights import WeightsError
from detbench.progress import quiet

TINY = "open_clip:detbench-tiny-vit@random"
FAST = {**NSNet.tiny_settings, "backbone": TINY}


def text_matrix(n: int = 6, d: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(n, d, generator=g, dtype=torch.float64)
    return t / t.norm(dim=1, keepdim=True)


def make(tmp: Path, **overrides: object) -> tuple[NSNet, RunContext]:
    cfg = apply_overrides(NSNetConfig(), {**FAST, **overrides})
    ctx = RunContext(suite_root=tmp, suite_name="test", device="cpu", seed=0, run_dir=tmp, phases=quiet(), workers=0)
    det = NSNet(cfg)
    det.setup(ctx)
    return det, ctx


# ------------------------------------------------------------------------------------------- the null space


def test_projected_features_are_orthogonal_to_every_semantic_direction() -> None:
    text = text_matrix()
    basis, facts = semantic_basis(text, NullConfig())
    assert facts["rank"] == facts["numerical_rank"] == 6 and facts["dim"] == 16
    feats = torch.randn(5, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    projected = null_project(feats, basis)
    assert torch.allclose(projected @ text.T, torch.zeros(5, 6, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(basis.T @ basis, torch.eye(6, dtype=torch.float64), atol=1e-12)  # orthonormal


def test_projection_is_idempotent_and_keeps_what_is_already_orthogonal() -> None:
    basis, _ = semantic_basis(text_matrix(), NullConfig())
    feats = torch.randn(4, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    once = null_project(feats, basis)
    assert torch.allclose(null_project(once, basis), once, atol=1e-12)
    assert not torch.allclose(once, feats)


def test_rank_and_energy_choose_the_top_directions() -> None:
    text = torch.cat([text_matrix(3), text_matrix(3, seed=1) * 1e-3])  # three strong directions, three weak ones
    _, s, vh = torch.linalg.svd(text, full_matrices=False)
    basis, facts = semantic_basis(text, NullConfig(rank=2))
    assert facts["rank"] == 2 and torch.allclose(basis.abs(), vh[:2].T.abs())
    _, facts = semantic_basis(text, NullConfig(energy=0.999))
    assert facts["rank"] == 3 and facts["energy"] >= 0.999
    _, facts = semantic_basis(text, NullConfig(energy=float((s[:1] ** 2).sum() / (s**2).sum())))
    assert facts["rank"] == 1  # an energy met exactly by the first direction keeps one
    with pytest.raises(ConfigError, match="exceeds the 6 independent"):
        semantic_basis(text, NullConfig(rank=7))


def test_numerically_dependent_directions_are_not_removed() -> None:
    base = text_matrix(3)
    text = torch.cat([base, base[:1] + base[1:2]])  # a fourth prompt in the span of the first two
    _, facts = semantic_basis(text, NullConfig())
    assert facts["numerical_rank"] == facts["rank"] == 3


def test_a_null_space_that_is_empty_is_refused() -> None:
    with pytest.raises(ConfigError, match="null space is empty"):
        semantic_basis(text_matrix(20, 16), NullConfig())


def test_the_network_projects_onto_the_null_space_of_its_text_tower(tmp_path: Path) -> None:
    det, _ = make(tmp_path)
    text = load_text_tower(TINY).encode(prompts(TextConfig())).float()
    _, _, vh = torch.linalg.svd(text.double(), full_matrices=False)
    semantic = vh[:8].float()  # the 8 top directions (tiny_settings: null.rank=8)
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    feats = det.net.features(x)
    assert feats.abs().max() > 1e-3
    assert (feats @ semantic.T).abs().max() < 1e-5
    assert det.null_facts["rank"] == 8 and det.null_facts["n_prompts"] == len(COCO_CLASSES)


# ------------------------------------------------------------------------------------------- the loss


def test_supcon_equals_a_hand_computation() -> None:
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-0.8, 0.6]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    t = 0.5
    total, anchors = 0.0, 0
    for i in range(4):
        denominator = sum(math.exp(float(z[i] @ z[a]) / t) for a in range(4) if a != i)
        positives = [p for p in range(4) if p != i and labels[p] == labels[i]]
        total += -sum(math.log(math.exp(float(z[i] @ z[p]) / t) / denominator) for p in positives) / len(positives)
        anchors += 1
    assert float(supcon_loss(z, labels, t)) == pytest.approx(total / anchors, rel=1e-12)


def test_supcon_skips_anchors_without_a_positive() -> None:
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    t = 0.1
    s01, s02, s12 = 0.6 / t, 0.0 / t, 0.8 / t
    a0 = -(s01 - math.log(math.exp(s01) + math.exp(s02)))
    a1 = -(s01 - math.log(math.exp(s01) + math.exp(s12)))
    assert float(supcon_loss(z, labels, t)) == pytest.approx((a0 + a1) / 2, rel=1e-12)
    assert float(supcon_loss(z[:1], labels[:1], t)) == 0.0


def test_loss_is_bce_plus_weighted_supcon_and_bce_alone_in_evaluation() -> None:
    g = torch.Generator().manual_seed(4)
    logits, emb = torch.randn(6, 1, generator=g), torch.nn.functional.normalize(torch.randn(6, 3, generator=g))
    labels = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], labels)
    sup = supcon_loss(emb, labels, 0.2)
    outputs = torch.cat([logits, emb], 1)
    assert torch.allclose(ns_net_loss(outputs, labels, loss="supcon", temperature=0.2, weight=0.5), bce + 0.5 * sup)
    assert torch.allclose(ns_net_loss(outputs, labels, loss="none", temperature=0.2, weight=0.5), bce)
    assert torch.allclose(ns_net_loss(logits, labels, loss="supcon", temperature=0.2, weight=0.5), bce)


# ------------------------------------------------------------------------------------------- the network and state


def test_training_mode_returns_logit_and_unit_embedding_and_only_the_head_is_state(tmp_path: Path) -> None:
    det, _ = make(tmp_path)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    det.net.eval()
    assert det.net(x).shape == (2, 1)
    det.net.train()
    out = det.net(x)
    assert out.shape == (2, 1 + 8) and torch.allclose(out[:, 1:].norm(dim=1), torch.ones(2), atol=1e-5)
    assert not det.backbone.model.training  # the frozen tower keeps eval mode
    assert all(k.startswith("head.") for k in det.net.state_dict())
    assert {n for n, p in det.net.named_parameters()} == set(det.net.state_dict())  # the head's, all trained


def test_a_step_changes_the_head_and_not_clip(tmp_path: Path) -> None:
    det, _ = make(tmp_path)
    clip = {k: v.clone() for k, v in det.backbone.model.state_dict().items()}
    head = {k: v.clone() for k, v in det.net.head.state_dict().items()}
    opt = torch.optim.AdamW(det.net.head.parameters(), lr=1e-2)
    det.net.train()
    x = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(6))
    loss = ns_net_loss(det.net(x), torch.tensor([0.0, 1.0, 0.0, 1.0]), loss="supcon", temperature=0.07, weight=1.0)
    loss.backward()
    opt.step()
    assert all(torch.equal(v, det.backbone.model.state_dict()[k]) for k, v in clip.items())
    assert any(not torch.equal(v, det.net.head.state_dict()[k]) for k, v in head.items())


def test_a_released_weights_file_of_another_detector_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    univfd_head = tmp_path / "fc_weights.safetensors"  # UnivFD's released layout: weight [1, D], bias [1]
    save_file({"weight": torch.zeros(1, 64), "bias": torch.zeros(1)}, univfd_head)
    with pytest.raises(WeightsError, match="head.projector"):
        make(tmp_path, weights=str(univfd_head))


def test_a_saved_state_reloads_through_weights(tmp_path: Path) -> None:
    det, _ = make(tmp_path)
    with torch.no_grad():
        for p in det.net.head.parameters():
            p.add_(0.1)
    det.save(tmp_path / "state")
    again, _ = make(tmp_path, weights=str(tmp_path / "state" / "model.safetensors"))
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(7))
    det.net.eval()
    assert torch.equal(det.net(x), again.net(x))


# ------------------------------------------------------------------------------------------- text and settings


def test_prompts_from_classes_and_from_a_file(tmp_path: Path) -> None:
    two = prompts(TextConfig(templates=("a photo of a {}.", "a {} in the wild")))
    assert len(two) == 2 * len(COCO_CLASSES) and two[0] == "a photo of a person." and two[80] == "a person in the wild"
    lines = tmp_path / "captions.txt"
    lines.write_text("a dog on a sofa\n\n  a red car  \n", encoding="utf-8")
    assert prompts(TextConfig(source="file", file=str(lines))) == ["a dog on a sofa", "a red car"]
    with pytest.raises(ConfigError, match="cannot read"):
        prompts(TextConfig(source="file", file=str(tmp_path / "missing.txt")))
    (tmp_path / "blank.txt").write_text("\n \n")
    with pytest.raises(ConfigError, match="holds no prompt"):
        prompts(TextConfig(source="file", file=str(tmp_path / "blank.txt")))


def test_settings_are_validated() -> None:
    for bad in ({"null.energy": 0.0}, {"null.rank": -1}, {"contrastive.temperature": 0.0},
                {"contrastive.weight": -1.0}, {"train_batch_size": 1}, {"text.templates": "no slot"},
                {"text.source": "file"}):
        with pytest.raises(ConfigError):
            apply_overrides(NSNetConfig(), bad)


def test_the_text_tower_needs_whole_clip_weights(tiny_vit_file: Path) -> None:
    with pytest.raises(BackboneError, match="only an image tower"):
        load_text_tower(f"open_clip:detbench-tiny-vit@{tiny_vit_file}")
    with pytest.raises(BackboneError, match="no text tower"):
        load_text_tower("timm:efficientnet_lite0@bundled")


def test_a_backbone_without_a_text_tower_fails_in_setup(tmp_path: Path, tiny_vit_file: Path) -> None:
    with pytest.raises(BackboneError, match="only an image tower"):
        make(tmp_path, backbone=f"open_clip:detbench-tiny-vit@{tiny_vit_file}")


def test_fit_records_the_null_space(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        label = i % 2
        img = np.full((40, 40, 3), 128.0) + (rng.normal(0, 40, (40, 40, 3)) if label else 0)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
        rows.append({"path": f"{i}.png", "label": label, "image_id": f"id{i}", "generator": "g", "split": "train",
                     "status": "ok"})
    frame = pd.DataFrame(rows)
    det, ctx = make(tmp_path)
    facts = det.fit(frame.iloc[2:], frame.iloc[:2], ctx)
    assert facts["trained"] and facts["null_space"]["rank"] == 8 and facts["null_space"]["dim"] == 64
    scores, failures = det.predict(frame, ctx)
    assert not failures and np.all((scores >= 0) & (scores <= 1))


def test_the_prompt_file_is_named_by_its_content_not_its_path(tmp_path: Path) -> None:
    from detbench.engine.plan import identity_config

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "captions.txt").write_text("a dog on a sofa\na red car\n", encoding="utf-8")
    configs = [apply_overrides(NSNetConfig(), {"text.source": "file", "text.file": str(tmp_path / f / "captions.txt")})
               for f in ("a", "b")]
    detector = NSNet(configs[0])
    assert identity_config(detector, configs[0]) == identity_config(detector, configs[1])
    assert identity_config(detector, configs[0])["text"]["file"] == "file"
    assert identity_config(detector, NSNetConfig())["text"]["file"] == ""  # no file: unchanged


def test_the_identity_holds_no_float_that_rounding_could_change(tmp_path: Path) -> None:
    det, _ = make(tmp_path)
    null = det.identity()["null_space"]
    assert "energy" not in null and null["rank"] == 8 and null["n_prompts"] == len(COCO_CLASSES)


def test_the_text_tower_of_a_whole_clip_file_encodes_as_open_clip(tmp_path: Path) -> None:
    import open_clip
    from safetensors.torch import save_file

    from detbench.models.backbones import load_backbone, register_tiny_models

    register_tiny_models()
    torch.manual_seed(11)
    clip = open_clip.create_model("detbench-tiny-vit").eval()
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, tmp_path / "whole.safetensors")
    spec = f"open_clip:detbench-tiny-vit@{tmp_path / 'whole.safetensors'}"
    tower = load_text_tower(spec)
    texts = ["a photo of a dog.", "a red car"]
    with torch.no_grad():
        expected = clip.encode_text(open_clip.get_tokenizer("detbench-tiny-vit")(texts)).double()
    assert torch.allclose(tower.encode(texts), expected / expected.norm(dim=1, keepdim=True), atol=1e-12)
    assert tower.identity()["weights_sha256"] == load_backbone(spec).weights_sha256 is not None
