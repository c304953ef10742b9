"""A ``folder``-suite tree holding good images and every hostile file a scraped benchmark contains.

Layout: ``root/{train,test}/{alpha,beta}/{real,fake}/*``. Good images fill every leaf (enough for a linear
probe trained on ``alpha``); the hostile cases sit mostly in the evaluation split, a few in ``alpha``'s
training split. Each case records what the index must say about it and whether a run must score it.
Two cases only become hostile after indexing: :meth:`HostileTree.after_indexing` deletes one file and
rewrites another, to be called between a run's index phase and its scoring.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from replicas import write_broken, write_image, write_special

GENERATORS = ("alpha", "beta")
GOOD_PER_LEAF = {"train": 8, "test": 4}


@dataclass(frozen=True)
class Case:
    """One hostile file: ``status`` is its expected index status; ``skip`` the status prefix its score row
    must carry when it cannot be scored (None: it must get a finite score, or it is not evaluated)."""

    path: str
    status: str
    skip: str | None
    note: str = ""


@dataclass
class HostileTree:
    root: Path
    cases: dict[str, Case] = field(default_factory=dict)
    good: list[str] = field(default_factory=list)

    def add(self, kind: str, path: Path, status: str, skip: str | None, note: str = "") -> None:
        self.cases[kind] = Case(path.relative_to(self.root).as_posix(), status, skip, note)

    def after_indexing(self) -> None:
        """Delete ``deleted-after-index`` files and rewrite ``changed-after-index`` with other pixels."""
        for kind, case in self.cases.items():
            path = self.root / case.path
            if kind.startswith("deleted-after-index"):
                path.unlink()
            elif kind == "changed-after-index":
                write_image(path, size=29, seed=999)

    @property
    def eval_cases(self) -> dict[str, Case]:
        return {k: c for k, c in self.cases.items() if c.path.startswith("test/")}


def png_header_bomb(path: Path, side: int = 100_000) -> Path:
    """A valid PNG header claiming ``side``x``side`` pixels and a tiny IDAT: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def _noise(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)


def _animated(path: Path, **kwargs: object) -> Path:
    frames = [Image.new("RGB", (24, 24), colour) for colour in ((200, 30, 30), (30, 200, 30), (30, 30, 200))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0, **kwargs)
    return path


def build_hostile_tree(root: Path) -> HostileTree:
    """Write the tree under ``root`` (which must not exist yet) and return its expectations."""
    tree = HostileTree(Path(root))
    seed = 0
    for split, n in GOOD_PER_LEAF.items():
        for gen in GENERATORS:
            for label in ("real", "fake"):
                for j in range(n):
                    seed += 1
                    ext = ".jpg" if (label == "real") == (j % 2 == 0) else ".png"
                    path = write_image(
                        tree.root / split / gen / label / f"good_{j:02d}{ext}", size=32, seed=seed
                    )
                    tree.good.append(path.relative_to(tree.root).as_posix())

    ta, tb = tree.root / "test" / "alpha", tree.root / "test" / "beta"
    train = tree.root / "train" / "alpha"
    tree.add("zero-byte", write_broken(ta / "fake" / "zero.png", "empty"), "empty", "empty")
    tree.add(
        "truncated",
        write_broken(ta / "real" / "truncated.jpg", "truncated", size=48),
        "truncated",
        "truncated",
    )
    wrong_ext = ta / "fake" / "really_png.jpg"
    _noise(32, 32, 1).save(wrong_ext, "PNG")
    tree.add("wrong-extension", wrong_ext, "ok", None, "a PNG named .jpg")
    tree.add("html-as-jpg", write_broken(tb / "fake" / "page.jpg", "text"), "undecodable", "undecodable")
    tree.add("cmyk", write_special(tb / "real" / "cmyk.jpg", "cmyk", size=32), "ok", None)
    tree.add("16-bit", write_special(tb / "fake" / "sixteen.png", "16bit", size=32), "ok", None)
    tree.add("palette", write_special(ta / "real" / "palette.png", "palette", size=32), "ok", None)
    rgba = ta / "fake" / "rgba.png"
    _noise(32, 32, 2, "RGBA").save(rgba)
    tree.add("rgba", rgba, "ok", None)
    grey = tb / "real" / "grey.jpg"
    _noise(32, 32, 3, "L").save(grey, quality=90)
    tree.add("greyscale", grey, "ok", None)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 48x32, displayed rotated to 32x48
    rotated = tb / "fake" / "rotated.jpg"
    _noise(48, 32, 4).save(rotated, quality=90, exif=exif.tobytes())
    tree.add("exif-rotated", rotated, "ok", None)
    tree.add("animated-gif", _animated(ta / "fake" / "anim.gif"), "ok", None)
    tree.add("animated-webp", _animated(tb / "fake" / "anim.webp", lossless=True), "ok", None)
    one = ta / "real" / "one.png"
    _noise(1, 1, 5).save(one)
    tree.add("1x1", one, "ok", None)
    tree.add("decompression-bomb", png_header_bomb(tb / "fake" / "bomb.png"), "too_large", "too_large")
    loop = ta / "real" / "loop.png"
    loop.symlink_to(loop.name)
    tree.add("symlink-loop", loop, "not_a_file", "not_a_file")
    dangling = tb / "real" / "dangling.png"
    dangling.symlink_to("does_not_exist.png")
    tree.add("dangling-symlink", dangling, "not_a_file", "not_a_file")
    (ta / "fake" / "dir_loop").symlink_to("..", target_is_directory=True)  # walked once, never re-entered
    unreadable = write_image(tb / "fake" / "unreadable.png", size=32, seed=106)
    unreadable.chmod(0)
    readable = os.access(unreadable, os.R_OK)  # root reads anything: the file then stays usable
    tree.add(
        "unreadable",
        unreadable,
        "ok" if readable else "unreadable",
        None if readable else "unreadable",
        "chmod 000, but readable by root" if readable else "chmod 000",
    )
    deleted = write_image(ta / "real" / "deleted.png", size=32, seed=107)
    tree.add("deleted-after-index", deleted, "ok", "not_a_file")
    changed = write_image(tb / "real" / "changed.png", size=32, seed=108)
    tree.add("changed-after-index", changed, "ok", "changed")

    tree.add("train-zero-byte", write_broken(train / "fake" / "zero.png", "empty"), "empty", None)
    tree.add("train-html", write_broken(train / "real" / "page.jpg", "text"), "undecodable", None)
    tree.add(
        "deleted-after-index-train", write_image(train / "real" / "gone.png", size=32, seed=109), "ok", None
    )
    return tree
