"""TAM overhead: MPFT training-step throughput with Texture-Aware Masking vs plain partial fine-tuning.

    python benchmarks/bench_tam.py --steps 20 --csv results/bench/tam_overhead.csv

Both configurations are the demo suite's MPFT settings (EfficientNet-Lite0 bundled weights, 128 px crop,
last 2 stages + head trainable, batch 32) and differ only in ``mask.strategy`` (``tam`` vs ``none``). Each
timed step is ``MPFT.train_step`` (mask, forward, backward, clipping, AdamW) on the same pre-built random
batches; the two configurations alternate step by step so that load drifts hit both alike, and medians are
reported. The mask alone is also timed, which gives the overhead without the noise of two step timings.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path


def build(strategy: str, operator: str, batch_size: int, device: str, tmp: Path):
    from detbench.config import apply_overrides
    from detbench.detectors.mpft import MPFT, MPFTConfig
    from detbench.kit.detector import RunContext
    from detbench.progress import quiet

    overrides = {**MPFT.profile_defaults["small"], "backbone": "timm:efficientnet_lite0@bundled",
                 "batch_size": batch_size, "mask.strategy": strategy, "mask.operator": operator}
    det = MPFT(apply_overrides(MPFTConfig(), overrides))
    det.setup(RunContext(suite_root=tmp, suite_name="bench", device=device, seed=0, run_dir=tmp,
                         phases=quiet()))
    det.move_to(device)
    return det, det.make_optimizer()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per configuration first")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--operator", default="diff4", help="TAM texture operator")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--csv", type=Path, help="also write the table here, e.g. results/bench/tam.csv")
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory(prefix="detbench-bench-") as tmp:
        runs = {name: build(name, args.operator, args.batch_size, args.device, Path(tmp))
                for name in ("none", "tam")}
        crop = runs["tam"][0].backbone.preprocess.crop
        g = torch.Generator().manual_seed(0)
        batches = [(torch.randn(args.batch_size, 3, crop, crop, generator=g).to(args.device),
                    torch.tensor([0, 1] * (args.batch_size // 2), device=args.device))
                   for _ in range(4)]
        times: dict[str, list[float]] = {name: [] for name in runs}
        mask_times: list[float] = []
        sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
        for i in range(args.warmup + args.steps):
            x, y = batches[i % len(batches)]
            for name, (det, optimizer) in runs.items():
                gen = torch.Generator(device=args.device).manual_seed(i)
                sync()
                start = time.perf_counter()
                det.train_step(x, y, optimizer, gen)
                sync()
                if i >= args.warmup:
                    times[name].append(time.perf_counter() - start)
            det = runs["tam"][0]
            sync()
            start = time.perf_counter()
            det.make_mask(x, torch.Generator(device=args.device).manual_seed(i))
            sync()
            if i >= args.warmup:
                mask_times.append(time.perf_counter() - start)

    step = {name: statistics.median(t) for name, t in times.items()}
    mask = statistics.median(mask_times)
    rows = [
        {"config": "none (plain partial fine-tuning)", "step_s": step["none"], "overhead_pct": 0.0},
        {"config": f"tam ({args.operator}, ratio 0.4)", "step_s": step["tam"],
         "overhead_pct": 100 * (step["tam"] / step["none"] - 1)},
        {"config": "mask computation alone", "step_s": mask, "overhead_pct": 100 * mask / step["none"]},
    ]
    for r in rows:
        r["images_per_s"] = args.batch_size / r["step_s"]
    threads = torch.get_num_threads()
    print(f"device {args.device} ({threads} threads), batch {args.batch_size}, crop {crop}, "
          f"{args.steps} timed steps per configuration (medians)")
    print(f"{'configuration':36s} {'step s':>8s} {'images/s':>9s} {'overhead %':>11s}")
    for r in rows:
        print(f"{r['config']:36s} {r['step_s']:8.3f} {r['images_per_s']:9.1f} {r['overhead_pct']:11.2f}")
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as fh:
            setup = {"device": args.device, "threads": threads, "batch_size": args.batch_size, "crop": crop,
                     "steps": args.steps}
            writer = csv.DictWriter(fh, fieldnames=[*rows[0], *setup])
            writer.writeheader()
            for r in rows:
                writer.writerow({**r, **setup})
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
