"""The options of ``detbench bench``: which measures, on what sizes, validated before any work."""

from __future__ import annotations

from dataclasses import dataclass, field

DEMO_BACKBONE = "timm:efficientnet_lite0@bundled"


ALL = ("decode", "forward", "score", "reference", "mpft_step", "index", "cache_read", "metrics", "rss")


@dataclass
class Options:
    """What ``detbench bench`` measures and on what: backbone, device, sizes, counts and repetitions."""

    backbone: str = DEMO_BACKBONE
    device: str = "cpu"
    precision: str = "auto"  # forward passes (forward, score, mpft_step): see detbench.models.precision
    crop: int = 128  # the demo suite's crop
    size: int = 128  # generated image side (the demo suite's)
    images: int = 512
    batch_size: int = 64
    workers: int | None = None  # None: detbench's default (half the cores)
    repeats: int = 3
    index_files: int = 5000
    cache_rows: int = 50_000
    cache_dim: int = 768
    metric_scores: int = 1_000_000
    bootstrap: int = 1000
    rss_images: int = 0  # 0: skip the RSS run
    rss_crop: int = 32
    only: tuple[str, ...] = field(default_factory=lambda: tuple(w for w in ALL if w != "rss"))

    def validate(self) -> None:
        """Refuse unknown measures, out-of-range sizes and a malformed backbone spec before any work."""
        from detbench.errors import ConfigError
        from detbench.models.backbones import parse_spec
        from detbench.models.spec import split_sha256

        unknown = sorted(set(self.only) - set(ALL))
        if unknown:
            raise ConfigError(f"unknown measures {', '.join(unknown)}; choose from {', '.join(ALL)}")
        if "rss" in self.only and self.rss_images < 16:
            raise ConfigError("the rss measure needs --rss-images N (at least 16), e.g. --rss-images 50000")
        positive = {"crop": self.crop, "size": self.size, "images": self.images, "batch-size": self.batch_size,
                    "repeats": self.repeats, "index-files": self.index_files, "rss-crop": self.rss_crop}
        bad = [f"--{name} {value}" for name, value in positive.items() if value < 1]
        if self.workers is not None and self.workers < 0:
            bad.append(f"--workers {self.workers}")
        if bad:
            raise ConfigError(f"{', '.join(bad)}: sizes and counts must be >= 1 (--workers >= 0)")
        parse_spec(split_sha256(self.backbone)[0])
