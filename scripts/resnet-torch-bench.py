#!/usr/bin/env python3
"""CPU throughput of the GEM reference's reduced ResNet-18 in PyTorch.

Times one training step without an optimiser: forward in train mode,
cross-entropy over all classes, backward, and zeroing the gradients
(in place), of `model.common.ResNet18(classes, nf)` on random CIFAR-shaped
input (batch x 3072, viewed as 3x32x32), float32, for each batch size and
each torch.set_num_threads(T).

FLOP convention: the forward FLOPs are 2 x the multiply-accumulates of every
Conv2d and Linear layer (counted with forward hooks on one image; BatchNorm,
ReLU, the residual adds, pooling and the loss are not counted); backward is
taken as 2 x forward, so one training step costs 3 x forward FLOPs per image.

Usage:
  /work/peers/venv/bin/python scripts/resnet-torch-bench.py \
      [--batches 10,256] [--threads 1,2] [--seconds 10] [--json out.json]
"""

import argparse
import json
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F


def int_list(s):
    return [int(v) for v in s.split(",") if v.strip()]


def forward_macs_per_image(net):
    """Multiply-accumulates of Conv2d and Linear layers for one 3x32x32 image."""
    total = 0
    per_layer = []

    def conv_hook(m, inp, out):
        nonlocal total
        k = (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        macs = out.numel() * k
        total += macs
        per_layer.append(macs)

    def linear_hook(m, inp, out):
        nonlocal total
        macs = out.numel() * m.in_features
        total += macs
        per_layer.append(macs)

    hooks = []
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, torch.nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = net.training
    net.eval()
    with torch.no_grad():
        net(torch.zeros(1, 3 * 32 * 32))
    net.train(was_training)
    for h in hooks:
        h.remove()
    return total, len(per_layer)


def step(net, x, y):
    logits = net(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    net.zero_grad(set_to_none=False)
    return loss


def bench(net, batch, threads, seconds, classes, warmup, min_iters):
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(batch)
    x = torch.rand(batch, 3 * 32 * 32, generator=g)
    y = torch.randint(0, classes, (batch,), generator=g)
    net.train()
    for _ in range(warmup):
        step(net, x, y)
    times = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        step(net, x, y)
        times.append(time.perf_counter() - t0)
        if len(times) >= min_iters and time.perf_counter() - start >= seconds:
            break
    total = sum(times)
    times.sort()
    return {
        "iterations": len(times),
        "seconds": total,
        "ms_per_iter": 1e3 * total / len(times),
        "ms_per_iter_median": 1e3 * times[len(times) // 2],
        "ms_per_iter_min": 1e3 * times[0],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int_list, default=[10, 256])
    ap.add_argument("--threads", type=int_list, default=[1, 2])
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="approximate timed seconds per configuration")
    ap.add_argument("--nf", type=int, default=20)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--min-iters", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--ref", default=os.environ.get("GEM_REF", "/work/peers/gem-ref"),
                    help="checkout of the GEM reference (contains model/common.py)")
    args = ap.parse_args()

    sys.path.insert(0, args.ref)
    from model.common import ResNet18  # noqa: E402

    torch.manual_seed(args.seed)
    net = ResNet18(args.classes, nf=args.nf)
    n_params = sum(p.numel() for p in net.parameters())
    macs, n_layers = forward_macs_per_image(net)
    fwd_flop = 2 * macs
    step_flop = 3 * fwd_flop

    print(f"ResNet18(classes={args.classes}, nf={args.nf}) from {args.ref}: "
          f"{n_params} parameters")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}")
    print(f"FLOP convention: forward = 2 x MACs of {n_layers} Conv2d/Linear layers "
          f"= {fwd_flop / 1e6:.2f} MFLOP/image (BN, ReLU, adds, pooling, loss not "
          f"counted); backward = 2 x forward; step = 3 x forward = "
          f"{step_flop / 1e6:.2f} MFLOP/image")
    print(f"step = train-mode forward + cross_entropy + backward + zero_grad; "
          f"{args.warmup} warm-up iterations, then ~{args.seconds:g} s timed")
    print()
    hdr = f"{'batch':>6} {'threads':>7} {'iters':>6} {'images/s':>10} {'ms/iter':>10} " \
          f"{'ms median':>10} {'GFLOP/s':>9}"
    print(hdr)
    print("-" * len(hdr))

    results = []
    for batch in args.batches:
        for threads in args.threads:
            r = bench(net, batch, threads, args.seconds, args.classes,
                      args.warmup, args.min_iters)
            ips = batch * 1e3 / r["ms_per_iter"]
            gflops = ips * step_flop / 1e9
            r.update(batch=batch, threads=threads, images_per_s=ips, gflop_per_s=gflops)
            results.append(r)
            print(f"{batch:>6} {threads:>7} {r['iterations']:>6} {ips:>10.1f} "
                  f"{r['ms_per_iter']:>10.2f} {r['ms_per_iter_median']:>10.2f} "
                  f"{gflops:>9.2f}", flush=True)

    if args.json:
        out = {
            "generator": "scripts/resnet-torch-bench.py",
            "model": {"name": "ResNet18", "nf": args.nf, "classes": args.classes,
                      "parameters": n_params},
            "flop_convention": "forward = 2 x MACs of Conv2d and Linear layers; "
                               "backward = 2 x forward; step = 3 x forward",
            "forward_macs_per_image": macs,
            "forward_flop_per_image": fwd_flop,
            "step_flop_per_image": step_flop,
            "torch_version": torch.__version__,
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "seconds_per_config": args.seconds,
            "warmup": args.warmup,
            "results": results,
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
