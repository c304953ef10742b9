"""Miniature on-disk replicas of real suite layouts (tiny images, real folder and file naming).

Each builder writes a tree under a given root and returns a :class:`Replica` whose ``expected`` lists every
index row the adapter must produce: ``(path, generator, split, label, status)``. Broken files (0 bytes,
truncated, text saved as ``.png``) and unusual but valid images (CMYK JPEG, 16-bit PNG, palette PNG) are
placed where the real archives have such files.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

# canonical key -> (outer, inner) folder as extracted from the public GenImage archives
GENIMAGE_NESTED: dict[str, tuple[str, str]] = {
    "midjourney": ("Midjourney", "imagenet_midjourney"),
    "sdv14": ("stable_diffusion_v_1_4", "imagenet_ai_0419_sdv4"),
    "sdv15": ("stable_diffusion_v_1_5", "imagenet_ai_0424_sdv5"),
    "adm": ("ADM", "imagenet_ai_0508_adm"),
    "glide": ("glide", "imagenet_glide"),
    "wukong": ("wukong", "imagenet_ai_0424_wukong"),
    "vqdm": ("VQDM", "imagenet_ai_0419_vqdm"),
    "biggan": ("BigGAN", "imagenet_ai_0419_biggan"),
}
# flat variants seen in the wild (short names and distributed outer names, mixed case)
GENIMAGE_FLAT: dict[str, str] = {
    "midjourney": "Midjourney", "sdv14": "SDv1.4", "sdv15": "stable_diffusion_v_1_5", "adm": "ADM",
    "glide": "GLIDE", "wukong": "wukong", "vqdm": "VQDM", "biggan": "BigGAN",
}  # fmt: skip
# fake image side per generator, scaled down from real (BigGAN 128, ADM/GLIDE/VQDM 256, SD 512, MJ 1k)
GENIMAGE_SIZES = {"biggan": 8, "adm": 16, "glide": 16, "vqdm": 16, "sdv14": 24, "sdv15": 24, "wukong": 24,
                  "midjourney": 32}  # fmt: skip
FORENSYNTHS_CLASSES = {"progan": ("airplane", "car"), "stylegan": ("bedroom", "car", "cat"),
                       "cyclegan": ("apple", "horse")}  # fmt: skip
FORENSYNTHS_FLAT = ("biggan", "gaugan", "stargan", "deepfake", "seeingdark", "san", "crn", "imle")
UFD_DIFFUSION = {"guided": "imagenet", "ldm_200": "laion", "ldm_200_cfg": "laion", "ldm_100": "laion",
                 "glide_100_27": "laion", "glide_50_27": "laion", "glide_100_10": "laion",
                 "dalle": "laion"}  # fmt: skip

Row = tuple[str, str, str, int, str]  # path, generator, split, label, status


@dataclass
class Replica:
    root: Path
    expected: list[Row] = field(default_factory=list)

    def counts(self, status: str | None = "ok") -> Counter[tuple[str, str, int]]:
        """Expected rows per (generator, split, label), of one status (None: any)."""
        return Counter((g, s, lab) for _p, g, s, lab, st in self.expected if status is None or st == status)

    def add(self, path: Path, generator: str, split: str, label: int, status: str = "ok") -> None:
        self.expected.append((path.relative_to(self.root).as_posix(), generator, split, label, status))


# ------------------------------------------------------------------------------------------ files


def write_image(path: Path, *, size: int = 16, seed: int = 0, mode: str = "RGB", quality: int = 96) -> Path:
    """A small noise image, encoded by the extension (any case): PNG, JPEG, WebP, BMP, TIFF or GIF."""
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    if mode != "RGB":
        im = im.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
           ".tiff": "TIFF", ".gif": "GIF"}[ext]  # fmt: skip
    im.save(path, fmt, **({"quality": quality} if fmt in ("JPEG", "WEBP") else {}))
    return path


def write_special(path: Path, kind: str, *, size: int = 16, seed: int = 0) -> Path:
    """A valid but unusual image: ``cmyk`` (JPEG), ``16bit`` (greyscale PNG) or ``palette`` (PNG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "cmyk":
        return write_image(path, size=size, seed=seed, mode="CMYK")
    if kind == "16bit":
        values = np.random.default_rng(seed).integers(0, 65536, (size, size), dtype=np.uint16)
        Image.fromarray(values).save(path, "PNG")
        assert Image.open(path).mode.startswith("I")
        return path
    if kind == "palette":
        return write_image(path, size=size, seed=seed, mode="P")
    raise ValueError(kind)


def write_broken(path: Path, kind: str, *, size: int = 16, seed: int = 0) -> Path:
    """A bad file: ``empty`` (0 bytes), ``truncated`` (first half of a valid image) or ``text`` (HTML)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        buffer = io.BytesIO()
        fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
        rng = np.random.default_rng(seed)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, fmt)
        path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    elif kind == "text":
        path.write_text("<html><body>403 Forbidden</body></html>\n")
    else:
        raise ValueError(kind)
    return path


# ------------------------------------------------------------------------------------------ GenImage


def build_genimage(
    root: Path,
    *,
    layout: str = "nested",
    generators: tuple[str, ...] | None = None,
    n: int = 2,
    defects: bool = True,
) -> Replica:
    """GenImage with ``n`` fakes and ``n`` reals per generator and split.

    ``layout``: ``nested`` (``ADM/imagenet_ai_0508_adm/train/ai``) or ``flat`` (``SDv1.4/train/ai``).
    Fakes are PNG (ADM's as ``.PNG``), reals ImageNet-named ``.JPEG``; the flat layout also mixes ``.jpg``,
    ``.png`` and ``.webp``. With ``defects``: a 0-byte PNG in sdv14/train/ai, a truncated JPEG in
    adm/val/nature, an HTML file named ``.png`` in biggan/val/ai (bad), a CMYK JPEG, a 16-bit PNG and a
    palette PNG (valid, status ok).
    """
    rep = Replica(Path(root))
    seed = 0
    for gen in generators or tuple(GENIMAGE_NESTED):
        outer, inner = GENIMAGE_NESTED[gen]
        holder = rep.root / outer / inner if layout == "nested" else rep.root / GENIMAGE_FLAT[gen]
        tag = inner.rsplit("_", 1)[-1]
        for split in ("train", "val"):
            for j in range(n):
                seed += 1
                ext = ".png" if layout == "nested" else (".png", ".webp", ".png")[j % 3]
                ext = ".PNG" if gen == "adm" else ext
                fake = write_image(
                    holder / split / "ai" / f"{j:03d}_{tag}_{seed:05d}{ext}",
                    size=GENIMAGE_SIZES[gen],
                    seed=seed,
                )
                rep.add(fake, gen, split, 1)
                name = f"n01440764_{seed}" if split == "train" else f"ILSVRC2012_val_{seed:08d}"
                ext = ".JPEG" if layout == "nested" or j % 2 == 0 else ".jpg"
                real = write_image(holder / split / "nature" / f"{name}{ext}", size=10 + seed % 20, seed=seed)
                rep.add(real, gen, split, 0)
        if defects:
            _genimage_defects(rep, gen, holder)
    return rep


def _genimage_defects(rep: Replica, gen: str, holder: Path) -> None:
    bad = {
        "sdv14": ("train", "ai", "000_sdv4_99999.png", "empty"),
        "adm": ("val", "nature", "ILSVRC2012_val_00099999.JPEG", "truncated"),
        "biggan": ("val", "ai", "000_biggan_99999.png", "text"),
    }
    special = {
        "midjourney": ("train", "nature", "n01440764_99999.JPEG", "cmyk"),
        "vqdm": ("val", "ai", "000_vqdm_99999.png", "16bit"),
        "glide": ("train", "ai", "000_glide_99999.png", "palette"),
    }
    if gen in bad:
        split, folder, name, kind = bad[gen]
        path = write_broken(holder / split / folder / name, kind)
        rep.add(path, gen, split, int(folder == "ai"), "undecodable" if kind == "text" else kind)
    if gen in special:
        split, folder, name, kind = special[gen]
        path = write_special(holder / split / folder / name, kind)
        rep.add(path, gen, split, int(folder == "ai"))


# ------------------------------------------------------------------------------------------ UFD


def build_ufd(
    root: Path,
    *,
    train_classes: tuple[str, ...] = ("car", "cat", "chair", "horse", "airplane"),
    n: int = 2,
    pool: int = 3,
    test_dir: str = "test",
    extras: bool = True,
    defects: bool = True,
    val_n: int = 0,
) -> Replica:
    """UniversalFakeDetect: ``train/progan/<class>``, ``<test_dir>/<domain>/[<class>/]``, diffusion_datasets.
    ``val_n`` > 0 adds CNNDetection's ``val/progan/<class>`` with ``val_n`` images per label (split val).

    ``test_dir=""`` puts the test domains and ``diffusion_datasets`` directly under ``root`` (root is the
    test folder); ``train_classes=()`` makes a test-only root. ``extras`` adds stylegan2 and whichfaceisreal
    (not in the 19, so not expected). Each leaf has ``n`` images per label; each real pool has ``pool``
    images, expected once per domain that uses it. With ``defects``: a 0-byte PNG in san/1_fake and a
    truncated PNG in the laion pool (truncated in all 7 domains that use it).
    """
    rep = Replica(Path(root))
    test = rep.root / test_dir if test_dir else rep.root
    seed = 1000
    for cls in train_classes:
        for label, folder in ((1, "1_fake"), (0, "0_real")):  # 1_fake written first on purpose
            for j in range(n):
                seed += 1
                path = write_image(
                    rep.root / "train" / "progan" / cls / folder / f"{j + 1:05d}.png", seed=seed
                )
                rep.add(path, f"progan-{cls}", "train", label)
            for j in range(val_n):
                seed += 1
                path = write_image(rep.root / "val" / "progan" / cls / folder / f"{j + 1:05d}.png", seed=seed + 50000)
                rep.add(path, f"progan-{cls}", "val", label)
    leaves: list[tuple[str, Path]] = []
    for domain, classes in FORENSYNTHS_CLASSES.items():
        leaves.extend((domain, test / domain / cls) for cls in classes)
    leaves.extend(("sitd" if d == "seeingdark" else d, test / d) for d in FORENSYNTHS_FLAT)
    for key, leaf in leaves:
        for label, folder in ((0, "0_real"), (1, "1_fake")):
            for j in range(n):
                seed += 1
                ext = ".jpg" if key == "deepfake" and label == 0 else ".png"
                path = write_image(leaf / folder / f"{j + 1:05d}{ext}", seed=seed)
                rep.add(path, key, "test", label)
    if extras:
        for extra in ("stylegan2", "whichfaceisreal"):
            for folder in ("0_real", "1_fake"):
                write_image(test / extra / folder / "00001.png", seed=1)
    diffusion = test / "diffusion_datasets" if not test_dir else rep.root / "diffusion_datasets"
    pools: dict[str, list[Path]] = {}
    for name in ("imagenet", "laion"):
        pools[name] = [
            write_image(diffusion / name / "0_real" / f"{name}_{j:04d}.png", seed=seed + j)
            for j in range(pool)
        ]
    truncated = (
        write_broken(diffusion / "laion" / "0_real" / "laion_9999.png", "truncated") if defects else None
    )
    for domain, pool_name in UFD_DIFFUSION.items():
        for j in range(n):
            seed += 1
            rep.add(
                write_image(diffusion / domain / "1_fake" / f"{domain}_{j:04d}.png", seed=seed),
                domain,
                "test",
                1,
            )
        for path in pools[pool_name]:
            rep.add(path, domain, "test", 0)
        if truncated is not None and pool_name == "laion":
            rep.add(truncated, domain, "test", 0, "truncated")
    if defects:
        rep.add(write_broken(test / "san" / "1_fake" / "99999.png", "empty"), "san", "test", 1, "empty")
    return rep


# ------------------------------------------------------------------------------------------ folder


def build_folder(
    root: Path,
    *,
    pair: tuple[str, str] = ("0_real", "1_fake"),
    generators: tuple[str, ...] = ("sdxl",),
    splits: tuple[str, ...] = (),
    n: int = 2,
    fake_size: int = 17,
    real_size: int = 23,
) -> Replica:
    """``root/[<split>/]<gen>/{<real>,<fake>}/*``; fakes are ``fake_size``-pixel PNGs, reals
    ``real_size``-pixel JPEGs, so a label mix-up is visible in the index. The fake folder is created first."""
    rep = Replica(Path(root))
    real, fake = pair
    seed = 5000
    for split in splits or ("",):
        for gen in generators:
            base = rep.root / split / gen if split else rep.root / gen
            for label, folder in ((1, fake), (0, real)):
                for j in range(n):
                    seed += 1
                    ext, size = (".png", fake_size) if label else (".jpg", real_size)
                    path = write_image(base / folder / f"img_{j:03d}{ext}", size=size, seed=seed)
                    rep.add(path, gen, split or "test", label)
    return rep


# ------------------------------------------------------------------------------------------ AIGCDetectBenchmark

# the 16 set folders as eval_config.py spells them -> (canonical key, class folders or () for a flat set)
AIGCDETECT_SETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "progan": ("progan", ("airplane", "car")), "stylegan": ("stylegan", ("bedroom", "car")),
    "biggan": ("biggan", ()), "cyclegan": ("cyclegan", ("apple", "horse")), "stargan": ("stargan", ()),
    "gaugan": ("gaugan", ()), "stylegan2": ("stylegan2", ("car", "church")),
    "whichfaceisreal": ("whichfaceisreal", ()), "ADM": ("adm", ()), "Glide": ("glide", ()),
    "Midjourney": ("midjourney", ()), "stable_diffusion_v_1_4": ("sdv14", ()),
    "stable_diffusion_v_1_5": ("sdv15", ()), "VQDM": ("vqdm", ()), "wukong": ("wukong", ()),
    "DALLE2": ("dalle2", ()),
}  # fmt: skip


def build_aigcdetect(
    root: Path,
    *,
    test_dir: str = "test",
    train_classes: tuple[str, ...] = ("car", "cat", "chair", "horse"),
    n: int = 2,
    defects: bool = True,
) -> Replica:
    """AIGCDetectBenchmark: ``<test_dir>/<set>/[<class>/]{0_real,1_fake}`` with the 16 sets as eval_config.py
    spells them, and the CNNDetection training set ``train/progan/<class>``. Images have odd sizes (15 px
    reals, 17 px fakes) as real test sets do. With ``defects``: a 0-byte PNG in Midjourney/1_fake, a
    truncated JPEG in wukong/0_real and an HTML page saved as ``.png`` in DALLE2/1_fake."""
    rep = Replica(Path(root))
    test = rep.root / test_dir if test_dir else rep.root
    seed = 7000
    for cls in train_classes:
        for label, folder in ((1, "1_fake"), (0, "0_real")):
            for j in range(n):
                seed += 1
                path = write_image(rep.root / "train" / "progan" / cls / folder / f"{j:05d}.png", seed=seed)
                rep.add(path, f"progan-{cls}", "train", label)
    for folder_name, (key, classes) in AIGCDETECT_SETS.items():
        for leaf in [test / folder_name / c for c in classes] or [test / folder_name]:
            for label, folder in ((1, "1_fake"), (0, "0_real")):
                for j in range(n):
                    seed += 1
                    ext = ".png" if label else ".jpg"
                    size = 17 if label else 15
                    path = write_image(leaf / folder / f"{key}_{j:03d}{ext}", size=size, seed=seed)
                    rep.add(path, key, "test", label)
    if defects:
        for folder_name, key, folder, name, kind, status in (
            ("Midjourney", "midjourney", "1_fake", "mj_broken.png", "empty", "empty"),
            ("wukong", "wukong", "0_real", "real_broken.jpg", "truncated", "truncated"),
            ("DALLE2", "dalle2", "1_fake", "forbidden.png", "text", "undecodable"),
        ):
            path = write_broken(test / folder_name / folder / name, kind)
            rep.add(path, key, "test", int(folder == "1_fake"), status)
    return rep


# ------------------------------------------------------------------------------------------ test-only collections

GANGEN_FOLDERS = ("AttGAN", "BEGAN", "CramerGAN", "InfoMaxGAN", "MMDGAN", "RelGAN", "S3GAN", "SNGAN", "STGAN")


def build_gangen(root: Path, *, n: int = 2, defects: bool = True) -> Replica:
    """GANGen-Detection: ``<GAN>/{0_real,1_fake}`` for its 9 GANs (with ``defects``: a 0-byte PNG in
    STGAN/1_fake)."""
    rep = Replica(Path(root))
    seed = 8000
    for gan in GANGEN_FOLDERS:
        for label, folder in ((0, "0_real"), (1, "1_fake")):
            for j in range(n):
                seed += 1
                rep.add(write_image(rep.root / gan / folder / f"{j:04d}.png", seed=seed), gan.lower(), "test", label)
    if defects:
        rep.add(write_broken(rep.root / "STGAN" / "1_fake" / "9999.png", "empty"), "stgan", "test", 1, "empty")
    return rep


DIRE_SUBSETS = {"lsun_bedroom": ("adm", "ddpm", "sdv1_new"), "imagenet": ("adm", "sdv1")}


def build_diffusionforensics(root: Path, *, layout: str = "dire", n: int = 2, pool: int = 3) -> Replica:
    """DiffusionForensics. ``dire``: ``{images,recons,dire}/{train,test}/<subset>/{real,<gen>}`` (``pool``
    reals per subset and split, listed once per generator; recons/ and dire/ hold the same names; a truncated
    PNG among the test ADM LSUN-Bedroom images). ``npr``: ``<gen>/{0_real,1_fake}`` for adm, ddpm, sdv1_new
    (LSUN-Bedroom)."""
    rep = Replica(Path(root))
    seed = 9000
    if layout == "npr":
        for gen in DIRE_SUBSETS["lsun_bedroom"]:
            key = "lsun_bedroom-" + ("sdv1" if gen == "sdv1_new" else gen)
            for label, folder in ((0, "0_real"), (1, "1_fake")):
                for j in range(n):
                    seed += 1
                    rep.add(write_image(rep.root / gen / folder / f"{j:03d}.png", seed=seed), key, "test", label)
        return rep
    for representation in ("images", "recons", "dire"):
        for split in ("train", "test"):
            for subset, gens in DIRE_SUBSETS.items():
                base = rep.root / representation / split / subset
                reals = [write_image(base / "real" / f"{j:03d}.png", seed=seed + j) for j in range(pool)]
                for gen in gens:
                    key = f"{subset}-" + ("sdv1" if gen == "sdv1_new" else gen)
                    for j in range(n):
                        seed += 1
                        fake = write_image(base / gen / f"{j:03d}.png", seed=seed)
                        if representation == "images":
                            rep.add(fake, key, split, 1)
                    if representation == "images":
                        for real in reals:
                            rep.add(real, key, split, 0)
    broken = write_broken(rep.root / "images" / "test" / "lsun_bedroom" / "adm" / "999.png", "truncated")
    rep.add(broken, "lsun_bedroom-adm", "test", 1, "truncated")
    return rep


def build_chameleon(root: Path, *, n_real: int = 3, n_fake: int = 2, wrapper: str = "test") -> Replica:
    """Chameleon: ``[wrapper/]{0_real,1_fake}`` with JPEG reals and PNG fakes, and one 0-byte fake."""
    rep = Replica(Path(root))
    base = rep.root / wrapper if wrapper else rep.root
    for j in range(n_real):
        rep.add(write_image(base / "0_real" / f"real_{j:04d}.jpg", size=20, seed=9500 + j), "chameleon", "test", 0)
    for j in range(n_fake):
        rep.add(write_image(base / "1_fake" / f"fake_{j:04d}.png", size=18, seed=9600 + j), "chameleon", "test", 1)
    rep.add(write_broken(base / "1_fake" / "fake_9999.png", "empty"), "chameleon", "test", 1, "empty")
    return rep


SYNTHBUSTER_FOLDERS = (
    "dalle2", "dalle3", "firefly", "glide", "midjourney-v5", "stable-diffusion-1-3", "stable-diffusion-1-4",
    "stable-diffusion-2", "stable-diffusion-xl",
)  # fmt: skip


def build_synthbuster(root: Path, *, n: int = 2, pool: int = 3, real_name: str = "RAISE-1k") -> Replica:
    """Synthbuster as unzipped (``synthbuster/<generator>/*.png``) beside a RAISE-1k folder of ``pool`` TIFF
    reals (one truncated), each real listed once per generator."""
    rep = Replica(Path(root))
    reals = [write_image(rep.root / real_name / f"r{j:04d}.tif", size=20, seed=9700 + j) for j in range(pool)]
    broken = write_broken(rep.root / real_name / "r9999.png", "truncated")
    seed = 9800
    for gen in SYNTHBUSTER_FOLDERS:
        for j in range(n):
            seed += 1
            rep.add(write_image(rep.root / "synthbuster" / gen / f"{j:03d}.png", seed=seed), gen, "test", 1)
        for real in reals:
            rep.add(real, gen, "test", 0)
        rep.add(broken, gen, "test", 0, "truncated")
    (rep.root / "synthbuster" / "prompts.csv").write_text("image,prompt\n")
    return rep


# ------------------------------------------------------------------------------------------ Parquet shards

IMAGE_STRUCT_FIELDS = (("bytes", "binary"), ("path", "string"))


def encode_image(fmt: str, *, size: int = 16, seed: int = 0, quality: int = 90) -> bytes:
    """A small noise image encoded as ``fmt`` (PNG, JPEG, WEBP...)."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    im = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    im.save(buffer, fmt, **({"quality": quality} if fmt in ("JPEG", "WEBP") else {}))
    return buffer.getvalue()


def write_hf_shard(path: Path, rows: list[dict], *, class_names: tuple[str, ...] | None = ("fake", "real"),
                   row_group_size: int = 3, image_column: str = "image") -> Path:
    """A Parquet shard as Hugging Face ``datasets`` writes it: the image column is the ``Image`` struct of
    bytes and path (a row's ``image`` None is a null cell), the label an int64 ``ClassLabel`` whose names are
    stored in the schema metadata (``class_names=None``: plain values, no metadata)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    struct = pa.struct([(name, getattr(pa, kind)()) for name, kind in IMAGE_STRUCT_FIELDS])
    images = pa.array(
        [None if r["image"] is None else {"bytes": r["image"], "path": f"{i}.png"} for i, r in enumerate(rows)],
        type=struct,
    )
    columns = {image_column: images}
    for key in rows[0]:
        if key != "image":
            columns[key] = pa.array([r[key] for r in rows])
    table = pa.table(columns)
    if class_names is not None:
        features = {image_column: {"_type": "Image"}, "label": {"names": list(class_names), "_type": "ClassLabel"}}
        table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def build_hf_parquet(root: Path, *, n: int = 4, generators: tuple[str, ...] = ("sdxl", "flux")) -> Replica:
    """A hub-style dataset: ``data/train-00000-of-00001.parquet`` and two test shards, columns image (struct),
    label (ClassLabel names fake, real: **0 is fake**), generator and prompt. Per generator and split ``n``
    fakes (PNG) and ``n`` reals (JPEG, quality 90). The second test shard also holds broken cells: a null
    image (empty), truncated PNG bytes, an HTML page and 0 bytes (labelled fake, generator sdxl). Expected
    paths are locators ``<shard>#image:<row>``."""
    rep = Replica(Path(root))
    seed = 12000
    splits = {"train": ["data/train-00000-of-00001.parquet"],
              "test": ["data/test-00000-of-00002.parquet", "data/test-00001-of-00002.parquet"]}  # fmt: skip
    for split, shards in splits.items():
        per_shard: dict[str, list[dict]] = {s: [] for s in shards}
        k = 0
        for gen in generators:
            for label in (1, 0):
                for _ in range(n):
                    seed += 1
                    shard = shards[k % len(shards)]
                    k += 1
                    data = encode_image("PNG" if label else "JPEG", size=16 + label, seed=seed)
                    per_shard[shard].append({"image": data, "label": 1 - label, "generator": gen,
                                             "prompt": f"p{seed}", "_label": label})  # fmt: skip
        if split == "test":
            good = encode_image("PNG", seed=1)
            for data, status in ((None, "empty"), (good[: len(good) // 2], "truncated"),
                                 (b"<html>403</html>", "undecodable"), (b"", "empty")):  # fmt: skip
                per_shard[shards[1]].append({"image": data, "label": 0, "generator": "sdxl", "prompt": "bad",
                                             "_label": 1, "_status": status})  # fmt: skip
        for shard, rows in per_shard.items():
            clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
            write_hf_shard(rep.root / shard, clean)
            for row, r in enumerate(rows):
                locator = f"{shard}#image:{row:09d}"
                rep.expected.append((locator, r["generator"], split, r["_label"], r.get("_status", "ok")))
    return rep


# ------------------------------------------------------------------------------------------ 2025 suites


def build_wildrf(root: Path, *, n: int = 2, wrapper: str = "WildRF", defects: bool = True) -> Replica:
    """WildRF as unzipped: ``[wrapper/]{train,val}/{0_real,1_fake}`` (Reddit) and
    ``[wrapper/]test/{reddit,twitter,facebook}/{0_real,1_fake}``; JPEG reals and fakes of mixed sizes as posted,
    a PNG fake on Twitter, and (with ``defects``) a 0-byte JPEG among the Facebook fakes."""
    rep = Replica(Path(root))
    top = rep.root / wrapper if wrapper else rep.root
    seed = 16000
    leaves = [(top / "train", "reddit", "train"), (top / "val", "reddit", "val")]
    leaves += [(top / "test" / p, p, "test") for p in ("reddit", "twitter", "facebook")]
    for folder, platform, split in leaves:
        for label, name in ((1, "1_fake"), (0, "0_real")):
            for j in range(n):
                seed += 1
                ext = ".png" if (platform == "twitter" and label and j == 0) else ".jpg"
                path = write_image(folder / name / f"{platform}_{j:04d}{ext}", size=14 + seed % 7, seed=seed)
                rep.add(path, platform, split, label)
    if defects:
        rep.add(write_broken(top / "test" / "facebook" / "1_fake" / "fb_9999.jpg", "empty"), "facebook", "test", 1,
                "empty")
    return rep


AIGIBENCH_TEST = {"ProGAN": "progan", "StyleGAN-XL": "stylegan-xl", "InSwap": "inswap", "FLUX1-dev": "flux1-dev",
                  "Midjourney": "midjourney-v6", "Infinite-ID": "infinite-id", "SocialRF": "socialrf"}  # fmt: skip


def build_aigibench(root: Path, *, n: int = 2, sd_n: int = 4, defects: bool = True) -> Replica:
    """AIGIBench as unzipped: ``{train,val}/{car,cat,chair,horse,sdv1.4}/{0_real,1_fake}`` (ProGAN PNGs, SD v1.4
    PNG fakes and ImageNet JPEG reals, ``sd_n`` per label in train so the pooled and balanced mixes differ) and
    seven of the 25 ``test/<subset>/{0_real,1_fake}`` folders as spelled in the authors' logs. With ``defects``: a
    truncated PNG among the FLUX1-dev fakes."""
    rep = Replica(Path(root))
    seed = 17000
    for split in ("train", "val"):
        for source in ("car", "cat", "chair", "horse", "sdv1.4"):
            key = "sdv14" if source == "sdv1.4" else f"progan-{source}"
            count = sd_n if source == "sdv1.4" and split == "train" else n
            for label, name in ((1, "1_fake"), (0, "0_real")):
                for j in range(count):
                    seed += 1
                    ext = ".JPEG" if source == "sdv1.4" and not label else ".png"
                    path = write_image(rep.root / split / source / name / f"{j:05d}{ext}", seed=seed)
                    rep.add(path, key, split, label)
    for folder, key in AIGIBENCH_TEST.items():
        for label, name in ((0, "0_real"), (1, "1_fake")):
            for j in range(n):
                seed += 1
                path = write_image(rep.root / "test" / folder / name / f"{j:05d}.png", size=12 + seed % 9, seed=seed)
                rep.add(path, key, "test", label)
    if defects:
        broken = write_broken(rep.root / "test" / "FLUX1-dev" / "1_fake" / "99999.png", "truncated")
        rep.add(broken, "flux1-dev", "test", 1, "truncated")
    return rep


SEMITRUTHS_EDITS = (  # (method folder, source data set, model as the metadata names it, generator key)
    ("inpainting", "ADE20K", "StableDiffusion_v4", "stablediffusion-v4"),
    ("inpainting", "CelebAHQ", "Kandinsky_2_2", "kandinsky-2-2"),
    ("p2p", "CityScapes", "OpenJourney", "openjourney"),
)


def build_semitruths(root: Path, *, n: int = 2, defects: bool = True) -> Replica:
    """The Semi-Truths evaluation sample as extracted: ``metadata.csv`` listing the real originals
    (``original/images/<dataset>/``) and the edits (``{inpainting,p2p}/<dataset>/<model>/``) with the change metrics
    (semantic magnitude bin, area ratios, SSIM, LPIPS). Each real image is expected once per model. With ``defects``:
    a truncated PNG among the OpenJourney edits."""
    import csv

    rep = Replica(Path(root))
    seed = 18000
    columns = ["image_id", "image_path", "label", "dataset", "method", "model", "sem_magnitude", "post_edit_ratio",
               "area_ratio", "ssim", "lpips_score"]
    rows: list[dict] = []
    reals: list[Path] = []
    for dataset in ("ADE20K", "CelebAHQ", "CityScapes"):
        for j in range(n):
            seed += 1
            real = write_image(rep.root / "original" / "images" / dataset / f"{dataset}_{j:05d}.jpg", seed=seed)
            reals.append(real)
            rows.append({"image_id": real.stem, "image_path": real.relative_to(rep.root).as_posix(), "label": "real",
                         "dataset": dataset, "method": "", "model": "", "sem_magnitude": "", "post_edit_ratio": "",
                         "area_ratio": "", "ssim": "", "lpips_score": ""})  # fmt: skip
    magnitudes = ("small", "medium", "large")
    for method, dataset, model, key in SEMITRUTHS_EDITS:
        for j in range(n + 1):
            seed += 1
            fake = write_image(rep.root / method / dataset / model / f"{dataset}_{j:05d}_{model}.png", seed=seed)
            rep.add(fake, key, "test", 1)
            rows.append({"image_id": fake.stem, "image_path": fake.relative_to(rep.root).as_posix(), "label": "fake",
                         "dataset": dataset, "method": method, "model": model,
                         "sem_magnitude": magnitudes[j % 3], "post_edit_ratio": ("small", "large")[j % 2],
                         "area_ratio": f"{0.05 + 0.3 * j:.3f}", "ssim": f"{0.9 - 0.1 * j:.2f}",
                         "lpips_score": f"{0.1 * (j + 1):.2f}"})  # fmt: skip
        for real in reals:
            rep.add(real, key, "test", 0)
    if defects:
        broken = write_broken(rep.root / "p2p" / "CityScapes" / "OpenJourney" / "CityScapes_99999.png", "truncated")
        rep.add(broken, "openjourney", "test", 1, "truncated")
        rows.append({**rows[-1], "image_id": broken.stem, "image_path": broken.relative_to(rep.root).as_posix()})
    with (rep.root / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return rep


def build_commfor(root: Path, *, n: int = 2) -> Replica:
    """The Community Forensics evaluation split as downloaded: ``data/publicEval/<name>.parquet`` shards with
    columns image_name, format, resolution, image_data (plain bytes), model_name, prompt and label (0 real, 1
    generated; the reals have no model_name). ``n`` images per generator, ``n`` reals; a truncated PNG among the
    commercial generator's images. Each real is expected once per generator."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rep = Replica(Path(root))
    seed = 19000
    models = ("stabilityai/stable-diffusion-2", "runwayml/stable-diffusion-v1-5", "Midjourney")
    shards = {"data/publicEval/publicEval-00000.parquet": [], "data/publicEval/publicEval-00001.parquet": []}
    names = list(shards)
    k = 0
    for model in (*models, None):
        for j in range(n + (1 if model == "Midjourney" else 0)):
            seed += 1
            broken = model == "Midjourney" and j == n
            data = encode_image("PNG", seed=seed)
            shards[names[k % 2]].append({"image_name": f"{seed:08d}.png", "format": "PNG", "resolution": "[16, 16]",
                                         "image_data": data[: len(data) // 2] if broken else data,
                                         "model_name": model, "prompt": f"p{seed}", "label": int(model is not None),
                                         "_status": "truncated" if broken else "ok"})  # fmt: skip
            k += 1
    for shard, rows in shards.items():
        table = pa.table({key: [r[key] for r in rows] for key in rows[0] if not key.startswith("_")})
        (rep.root / shard).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, rep.root / shard, row_group_size=2)
        for row, r in enumerate(rows):
            locator = f"{shard}#image_data:{row:09d}"
            keys = [r["model_name"]] if r["model_name"] else list(models)
            for key in keys:
                rep.expected.append((locator, key.replace("/", "--"), "test", r["label"], r["_status"]))
    return rep


COSPY_MODELS = {"CompVis@stable-diffusion-v1-4": "stable-diffusion-v1-4",
                "black-forest-labs@FLUX.1-dev": "flux-1-dev"}  # fmt: skip


def build_cospybench(root: Path, *, n: int = 2, defects: bool = True) -> Replica:
    """Co-Spy-Bench as CO-SPY's ``download.py`` leaves it: ``synthetic/<source>/<org>@<model>/*.png`` for sources
    cc3m, textcaps and mscoco, and ``real_image_examples/{CC3M,TextCaps}/*.jpg`` with each caption ``.json``. MSCOCO
    has no real images there (the original reads them elsewhere): its fakes are not expected. Each real is expected
    once per generator of its source. With ``defects``: a truncated PNG among TextCaps' FLUX fakes."""
    import json

    rep = Replica(Path(root))
    seed = 20000
    for source, real_folder in (("cc3m", "CC3M"), ("textcaps", "TextCaps"), ("mscoco", None)):
        for model, key in COSPY_MODELS.items():
            for j in range(n):
                seed += 1
                path = write_image(rep.root / "synthetic" / source / model / f"{j:06d}.png", seed=seed)
                if real_folder:
                    rep.add(path, key, "test", 1)
        if real_folder:
            for j in range(n + 1):
                seed += 1
                real = write_image(rep.root / "real_image_examples" / real_folder / f"{j:08d}.jpg", seed=seed)
                real.with_suffix(".json").write_text(json.dumps({"caption": f"caption {j}"}))
                for key in COSPY_MODELS.values():
                    rep.add(real, key, "test", 0)
    if defects:
        broken = write_broken(rep.root / "synthetic" / "textcaps" / "black-forest-labs@FLUX.1-dev" / "999999.png",
                              "truncated")
        rep.add(broken, "flux-1-dev", "test", 1, "truncated")
    return rep


def pack_cospybench(rep: Replica, hub: Path) -> None:
    """The Hugging Face files a :func:`build_cospybench` tree was extracted from, as a download of the two data
    sets leaves them in ``hub``: ``<source>/<org>@<model>/images_with_metadata.tar.gz`` of ``ruojiruoli/Co-Spy-Bench``
    (entries ``<org>@<model>/<file>``: CO-SPY's ``download.py`` extracts each into ``synthetic/<source>/``) and
    ``real_image_examples.zip`` of ``ruojiruoli/Co-Spy-Misc`` (entries ``real_image_examples/<Source>/<file>``)."""
    import tarfile
    import zipfile

    for source in sorted(p for p in (rep.root / "synthetic").iterdir() if p.is_dir()):
        for model in sorted(p for p in source.iterdir() if p.is_dir()):
            archive = hub / source.name / model.name / "images_with_metadata.tar.gz"
            archive.parent.mkdir(parents=True, exist_ok=True)
            with tarfile.open(archive, "w:gz") as tar:
                tar.add(model, arcname=model.name)
    hub.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(hub / "real_image_examples.zip", "w") as zipped:
        for file in sorted((rep.root / "real_image_examples").rglob("*")):
            zipped.write(file, file.relative_to(rep.root).as_posix())


REALHD_GENERATORS = (  # (method folder, generator folder, generator key, content categories: () for none)
    ("text2image", "FLUX.1-dev", "text2image-flux-1-dev", ("animal", "portrait")),
    ("inpainting", "SDXL_Inpainting", "inpainting-sdxl-inpainting", ("portrait",)),
    ("faceswap", "InSwapper", "faceswap-inswapper", ()),
)


def realhd_pairing(path: str, generators: list[str], seed: int = 0) -> str:
    """The train/val generator a RealHD real image is listed under, by the rule the README states: the sorted
    generators of its split, indexed by a seeded 8-byte BLAKE2b hash of its path."""
    import hashlib

    digest = hashlib.blake2b(f"{seed}:{path}".encode(), digest_size=8).digest()
    return sorted(generators)[int.from_bytes(digest, "big") % len(generators)]


def build_realhd(root: Path, *, n: int = 2, wrapper: str = "RealHD", defects: bool = True) -> Replica:
    """RealHD as the paper describes it: ``[wrapper/]{train,test}/real/<category>/*.jpg`` and
    ``<split>/<method>/<generator>/[<category>/]*`` for a text-to-image, an inpainting (with its binary masks in
    ``masks/``, never indexed) and a face-swap generator, and a stray ``docs`` folder. Reals are expected under every
    test generator and under one train generator each (:func:`realhd_pairing`). With ``defects``: a 0-byte PNG among
    the test inpainting fakes."""
    rep = Replica(Path(root))
    top = rep.root / wrapper if wrapper else rep.root
    seed = 21000
    (top / "docs").mkdir(parents=True)
    (top / "docs" / "prompts.txt").write_text("a prompt\n")
    for split in ("train", "test"):
        generators = [key for _m, _g, key, _c in REALHD_GENERATORS]
        for method, folder, key, categories in REALHD_GENERATORS:
            for category in categories or ("",):
                holder = top / split / method / folder / category if category else top / split / method / folder
                for j in range(n):
                    seed += 1
                    rep.add(write_image(holder / f"{key}_{category}{j:05d}.png", seed=seed), key, split, 1)
                    if method == "inpainting":
                        write_image(top / split / method / folder / "masks" / category / f"{j:05d}.png", seed=seed)
        for category in ("animal", "portrait"):
            for j in range(n):
                seed += 1
                real = write_image(top / split / "real" / category / f"{category}_{j:05d}.jpg", seed=seed)
                path = real.relative_to(rep.root).as_posix()
                for key in generators if split == "test" else [realhd_pairing(path, generators)]:
                    rep.add(real, key, split, 0)
    if defects:
        broken = write_broken(top / "test" / "inpainting" / "SDXL_Inpainting" / "portrait" / "99999.png", "empty")
        rep.add(broken, "inpainting-sdxl-inpainting", "test", 1, "empty")
    return rep


# ---------------------------------------------------------------------------------- Arrow datasets (save_to_disk)


def write_arrow_shard(path: Path, table, *, stream: bool = True, batch_rows: int = 2) -> Path:
    """``table`` as an Arrow IPC shard: the stream format ``datasets``' ``save_to_disk`` writes (``stream=False``:
    the IPC file format), in record batches of ``batch_rows`` rows."""
    import pyarrow as pa

    path.parent.mkdir(parents=True, exist_ok=True)
    writer_class = pa.ipc.RecordBatchStreamWriter if stream else pa.ipc.RecordBatchFileWriter
    with pa.OSFile(str(path), "wb") as sink, writer_class(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=batch_rows):
            writer.write_batch(batch)
    return path


def write_saved_split(folder: Path, tables: list, *, split: str, features: dict) -> list[str]:
    """One split as ``Dataset.save_to_disk`` writes it: ``data-0000i-of-0000n.arrow`` shards (IPC streams), a
    ``dataset_info.json`` with the features and a ``state.json`` listing the shards. Returns the shards' names."""
    import json

    names = [f"data-{i:05d}-of-{len(tables):05d}.arrow" for i in range(len(tables))]
    for name, table in zip(names, tables, strict=True):
        metadata = {"huggingface": json.dumps({"info": {"features": features}})}
        write_arrow_shard(folder / name, table.replace_schema_metadata(metadata))
    (folder / "dataset_info.json").write_text(json.dumps({"citation": "", "description": "", "features": features,
                                                          "homepage": "", "license": ""}))  # fmt: skip
    (folder / "state.json").write_text(json.dumps({
        "_data_files": [{"filename": name} for name in names], "_fingerprint": "0123456789abcdef",
        "_format_columns": None, "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False,
        "_split": split}))  # fmt: skip
    return names


# AI-GenBench's generator names -> keys; Firefly is in the data but not in the benchmark's timeline
AIGENBENCH_GENERATORS = {"CycleGAN": "cyclegan", "StyleGAN1": "stylegan1", "Diffusion GAN (ProjectedGAN)":
                         "diffusion-gan-projectedgan", "Stable Diffusion 1.4": "stable-diffusion-1-4",
                         "Stable Diffusion XL 1.0": "stable-diffusion-xl-1-0", "FLUX 1 Dev": "flux-1-dev"}  # fmt: skip
AIGENBENCH_FEATURES = {
    "image": {"_type": "Image"}, "height": {"dtype": "uint32", "_type": "Value"},
    "width": {"dtype": "uint32", "_type": "Value"}, "label": {"names": ["real", "fake"], "_type": "ClassLabel"},
    "generator": {"dtype": "large_string", "_type": "Value"}, "file_id": {"dtype": "large_string", "_type": "Value"},
    "origin_dataset": {"dtype": "large_string", "_type": "Value"},
}  # fmt: skip


def aigenbench_real_pairing(reals: list[tuple[str, str]], fakes: Counter, seed: int) -> dict[str, str]:
    """Which generator each real image (``(locator, file_id)``) is listed under, by the rule the README states:
    reals in the order of a seeded hash of their ``file_id``, handed out in generator order, each generator's share
    proportional to its fakes (largest remainders first, ties by name)."""
    from detbench.data.suites import seeded_rank

    total, n = sum(fakes.values()), len(reals)
    quota = {g: n * c // total for g, c in fakes.items()}
    for g in sorted(fakes, key=lambda g: (-(n * fakes[g] % total), g))[: n - sum(quota.values())]:
        quota[g] += 1
    ordered = sorted(reals, key=lambda r: (seeded_rank(seed, r[1]), r[1], r[0]))
    out, start = {}, 0
    for g in sorted(fakes):
        out.update({locator: g for locator, _ in ordered[start:start + quota[g]]})
        start += quota[g]
    return out


def build_aigenbench(root: Path, *, n: int = 2, wrapper: str = "ai_gen_bench_v1.0.0") -> Replica:
    """AI-GenBench as ``simple_dataset_generation.py`` saves it (``DatasetDict.save_to_disk``):
    ``[wrapper/]dataset_dict.json`` and ``{train,validation}/`` each with ``data-*.arrow`` shards (IPC streams),
    ``dataset_info.json`` and ``state.json``; columns image (the Image struct), height, width, label (ClassLabel
    real, fake), generator (AI-GenBench's name, empty for reals), file_id, origin_dataset. Per split ``n`` fakes
    per benchmark generator (2 * ``n`` for FLUX 1 Dev), ``n`` Firefly fakes (not in the benchmark: skipped) and
    3 * ``n`` + 2 reals, paired with the generators as the README states (every fake counts for the shares, the
    broken one too); a truncated PNG among the validation split's CycleGAN fakes; a ``cache-*.arrow`` file that
    ``state.json`` does not list (ignored). The validation split is expected as ``test``."""
    import json

    import pyarrow as pa

    rep = Replica(Path(root))
    top = rep.root / wrapper if wrapper else rep.root
    top.mkdir(parents=True, exist_ok=True)
    (top / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "validation"]}))
    struct = pa.struct([(name, getattr(pa, kind)()) for name, kind in IMAGE_STRUCT_FIELDS])
    seed = 20000
    for split, split_key in (("train", "train"), ("validation", "test")):
        rows: list[dict] = []
        for name in (*AIGENBENCH_GENERATORS, "Firefly", ""):
            count = 2 * n if name == "FLUX 1 Dev" else 3 * n + 2 if not name else n
            for j in range(count):
                seed += 1
                data = encode_image("JPEG" if not name else "PNG", seed=seed)
                broken = split == "validation" and name == "CycleGAN" and j == 0
                rows.append({"image": {"bytes": data[: len(data) // 2] if broken else data, "path": f"{seed}.png"},
                             "height": 16, "width": 16, "label": int(bool(name)), "generator": name,
                             "file_id": f"{split}_{seed}", "origin_dataset": "coco" if not name else "synth",
                             "_status": "truncated" if broken else "ok"})  # fmt: skip
        rng = np.random.default_rng(len(split))
        rows = [rows[i] for i in rng.permutation(len(rows))]  # generators and reals interleaved, as concatenated
        half = len(rows) // 2
        tables = []
        for part in (rows[:half], rows[half:]):
            columns = {k: [r[k] for r in part] for k in part[0] if not k.startswith("_")}
            types = {"image": struct, "height": pa.uint32(), "width": pa.uint32(), "label": pa.int64()}
            tables.append(pa.table({k: pa.array(v, type=types.get(k, pa.large_string())) for k, v in columns.items()}))
        names = write_saved_split(top / split, tables, split=split, features=AIGENBENCH_FEATURES)
        (top / split / "cache-0123456789abcdef.arrow").write_bytes(b"not listed in state.json")
        located = [(f"{(Path(wrapper) / split / names[0 if i < half else 1]).as_posix()}"
                    f"#image:{(i if i < half else i - half):09d}", r) for i, r in enumerate(rows)]  # fmt: skip
        fakes = Counter(AIGENBENCH_GENERATORS[r["generator"]] for _, r in located
                        if r["generator"] in AIGENBENCH_GENERATORS)  # fmt: skip
        reals = [(loc, r["file_id"]) for loc, r in located if not r["generator"]]
        paired = aigenbench_real_pairing(reals, fakes, seed=1337)
        for locator, r in located:
            if r["generator"] in AIGENBENCH_GENERATORS:
                rep.expected.append((locator, AIGENBENCH_GENERATORS[r["generator"]], split_key, 1, r["_status"]))
            elif not r["generator"]:
                rep.expected.append((locator, paired[locator], split_key, 0, "ok"))
    return rep


# ------------------------------------------------------------------------------------------ file lists


def build_filelist(root: Path, *, n: int = 2, generators: tuple[str, ...] = ("sdxl", "flux")) -> Replica:
    """``images/<gen>/<real|fake>/*`` listed in ``labels.csv`` (columns path, label as real/fake, generator,
    split); the folders name nothing the suite reads: the list alone decides."""
    rep = Replica(Path(root))
    seed = 14000
    lines = ["path,label,generator,split"]
    for split in ("train", "test"):
        for gen in generators:
            for label in (0, 1):
                for j in range(n):
                    seed += 1
                    path = write_image(rep.root / "images" / gen / f"{split}_{label}_{j}.png", seed=seed)
                    rep.add(path, gen, split, label)
                    lines.append(f"{path.relative_to(rep.root).as_posix()},{'fake' if label else 'real'},{gen},{split}")
    (rep.root / "labels.csv").write_text("\n".join(lines) + "\n")
    return rep


def _split_folders(root: Path) -> Replica:
    return build_folder(root, generators=("sdxl", "flux"), splits=("train", "test"))


# suite name -> the builder of a replica of its layout, and the suite options it needs (the suite contract tests scan
# each one)
REPLICAS: dict[str, tuple[Callable[[Path], Replica], dict[str, str]]] = {
    "genimage": (build_genimage, {}),
    "universalfakedetect": (build_ufd, {}),
    "folder": (_split_folders, {}),
    "aigcdetect": (build_aigcdetect, {}),
    "gangen": (build_gangen, {}),
    "diffusionforensics": (build_diffusionforensics, {}),
    "chameleon": (build_chameleon, {}),
    "synthbuster": (build_synthbuster, {}),
    "list": (build_filelist, {}),
    "parquet": (build_hf_parquet, {"generator_column": "generator"}),
    "wildrf": (build_wildrf, {}),
    "aigibench": (build_aigibench, {}),
    "semitruths": (build_semitruths, {}),
    "commfor": (build_commfor, {}),
    "aigenbench": (build_aigenbench, {}),
    "cospybench": (build_cospybench, {}),
    "realhd": (build_realhd, {}),
    "split-collection": (_split_folders, {}),  # the guide's template suite
}
