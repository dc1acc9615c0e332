"""Detector speed: a real-size Grounding DINO-T architecture with RANDOM weights (built from
its config, nothing downloaded), batch 1 vs batch 4, plus the weight-free exemplar detector.

Each setting runs in a fresh subprocess so its peak RSS is its own. On a CUDA machine it also
measures fp16 at batch 1/8/16. Prints one line per setting and the batch-4/batch-1 ratio.

    python benchmarks/bench_detect.py                 # CPU, 800x800, a few images (~3 min)
    python benchmarks/bench_detect.py --size 1024 --images 8
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _build(device: str, dtype: str):
    import torch
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    from autolabel.detect.grounding_dino import GroundingDinoDetector
    from autolabel.detect.tiny import tiny_grounding_dino_processor

    torch.manual_seed(0)
    # IDEA-Research/grounding-dino-tiny: Swin-T backbone, bert-base text encoder, 900 queries
    backbone = SwinConfig(
        embed_dim=96,
        depths=[2, 2, 6, 2],
        num_heads=[3, 6, 12, 24],
        window_size=7,
        out_indices=[2, 3, 4],
        out_features=["stage2", "stage3", "stage4"],
    )
    cfg = GroundingDinoConfig(
        backbone_config=backbone, text_config=BertConfig(), use_timm_backbone=False
    )
    model = GroundingDinoForObjectDetection(cfg).eval()
    model = model.to(device, getattr(torch, dtype))
    tok = tiny_grounding_dino_processor().tokenizer  # ids < 1100 are valid bert-base ids
    proc = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(), tokenizer=tok)
    n_params = sum(p.numel() for p in model.parameters())
    return GroundingDinoDetector.from_model(model, proc, box_threshold=0.3), n_params


def _images(n: int, size: int):
    import numpy as np

    from autolabel import synth

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        shot, _, _ = synth.make_screenshot(rng, size=(size, size))
        out.append(np.asarray(shot))
    return out


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    if args.mode == "exemplar":
        import numpy as np

        from autolabel.detect import build_detector

        imgs = _images(args.images + 1, args.size)
        ex = imgs[0][100:300, 100:300]
        det = build_detector("exemplar", exemplars=[np.ascontiguousarray(ex)])
        det.detect(imgs[:1], ["x"])
        t = time.perf_counter()
        for im in imgs[1:]:
            det.detect([im], ["x"])
        dt = time.perf_counter() - t
        n_params = 0
    else:
        det, n_params = _build(args.device, args.dtype)
        imgs = _images(args.batch, args.size)
        prompt = ["product. photo. shoe. handbag. price tag"] * args.batch
        det.image_size = args.size
        if args.device.startswith("cuda"):  # warm-up (kernels, allocator); on CPU a
            det.detect(imgs, prompt)  # forward takes seconds, so one timed call suffices
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(args.repeats):
            det.detect(imgs, prompt)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
    n = args.images if args.mode == "exemplar" else args.batch * args.repeats
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = 0.0
    if args.device.startswith("cuda"):
        gpu = torch.cuda.max_memory_allocated() / 2**20
    print(
        json.dumps(
            {"images_per_s": n / dt, "peak_rss_mb": rss, "peak_gpu_mb": gpu, "params": n_params}
        )
    )


def run(mode: str, device: str, dtype: str, batch: int, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--mode",
        mode,
        "--device",
        device,
        "--dtype",
        dtype,
        "--batch",
        str(batch),
        "--size",
        str(args.size),
        "--repeats",
        str(args.repeats),
        "--images",
        str(args.images),
        "--threads",
        str(args.threads),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{mode} {device} b{batch} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=800, help="square input side (px)")
    ap.add_argument("--repeats", type=int, default=1, help="timed calls per setting")
    ap.add_argument("--images", type=int, default=4, help="images for the exemplar timing")
    ap.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="gd", help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    import torch

    print(
        f"Grounding DINO-T architecture, random weights, {args.size}x{args.size} px, "
        f"5-phrase prompt, {args.threads} CPU threads"
    )
    res = {}
    for b in (1, 4):
        r = res[("cpu", b)] = run("gd", "cpu", "float32", b, args)
        print(
            f"cpu fp32 batch {b:2d}: {r['images_per_s']:.3f} images/s, "
            f"peak RSS {r['peak_rss_mb']:.0f} MB ({r['params'] / 1e6:.0f}M params)"
        )
    ratio = res[("cpu", 4)]["images_per_s"] / res[("cpu", 1)]["images_per_s"]
    print(f"cpu batch 4 / batch 1 throughput: {ratio:.2f}x")
    if torch.cuda.is_available():
        for b in (1, 8, 16):
            r = res[("cuda", b)] = run("gd", "cuda", "float16", b, args)
            print(
                f"cuda fp16 batch {b:2d}: {r['images_per_s']:.2f} images/s, "
                f"peak GPU {r['peak_gpu_mb']:.0f} MB"
            )
        print(
            f"cuda batch 16 / batch 1: "
            f"{res[('cuda', 16)]['images_per_s'] / res[('cuda', 1)]['images_per_s']:.2f}x"
        )
    else:
        print("cuda: not available here (fp16 batch 1/8/16 is measured on a CUDA machine)")
    r = run("exemplar", "cpu", "float32", 1, args)
    print(
        f"exemplar detector (1 exemplar, cpu): {r['images_per_s']:.2f} images/s, "
        f"peak RSS {r['peak_rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
