#!/usr/bin/env python3
"""Generate the ResNet parity fixture for the Rust `episodic` ResNet.

The fixture records what the GEM reference's reduced ResNet-18
(`model.common.ResNet18(nclasses, nf)` from facebookresearch/GradientEpisodicMemory)
does on a fixed, seeded batch in float32 on the CPU:

  params         initial parameters, flat, in `net.parameters()` order
  x, y, y_head   the input batch (batch x 3072, CHW pixels in [0,1)) and labels
  train_logits   training-mode forward (batch statistics)
  loss           mean cross-entropy over all classes, shape [1]
  grad           d loss / d params, flat, same order as `params`
  running_mean   BatchNorm running means after that one forward (momentum 0.1),
  running_var    concatenated over BatchNorm modules in `net.modules()` order
                 (torch's running_var uses the unbiased batch variance)
  eval_logits    eval-mode forward of x, using those running statistics
  masked_loss    GEM's CIFAR training loss for a head of classes [lo, hi),
  masked_grad    computed on a fresh copy of the initial network

Usage (from the repository root):

  /work/peers/venv/bin/python scripts/resnet-fixture.py \
      --out crates/episodic/tests/fixtures/resnet-nf2.safetensors

The reference is imported from --ref (default /work/peers/gem-ref, or $GEM_REF).
Requires torch and numpy; the `safetensors` Python package, if installed, is
used to verify the written file. Output is byte-identical across runs.
"""

import argparse
import copy
import json
import os
import sys

import torch
import torch.nn.functional as F
import struct

import numpy as np


DTYPES = {torch.float64: ("F64", 8, "<f8"), torch.float32: ("F32", 4, "<f4"),
          torch.int64: ("I64", 8, "<i8")}


def write_safetensors(path, tensors, metadata):
    """Write a safetensors file deterministically (byte-identical across runs).

    The pip `safetensors` writer emits `__metadata__` in hash-map order, which
    varies between runs, so the file is written here in a canonical form:
    metadata keys sorted, tensors laid out as the package lays them out (larger
    dtype first, then by name), header padded with spaces to 8 bytes. The
    result is read back with the `safetensors` package when it is installed.
    """
    order = sorted(tensors, key=lambda k: (-DTYPES[tensors[k].dtype][1], k))
    header = {"__metadata__": {k: metadata[k] for k in sorted(metadata)}}
    blobs, offset = [], 0
    for k in order:
        t = tensors[k]
        tag, _, npdt = DTYPES[t.dtype]
        raw = t.detach().contiguous().numpy().astype(npdt, copy=False).tobytes()
        header[k] = {"dtype": tag, "shape": list(t.shape),
                     "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    hjson = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode()
    hjson += b" " * (-len(hjson) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for raw in blobs:
            f.write(raw)


def check_roundtrip(path, tensors, metadata):
    try:
        from safetensors import safe_open
    except ImportError:
        print("note: python safetensors not installed; round-trip check skipped")
        return
    with safe_open(path, framework="pt") as f:
        assert f.metadata() == metadata, "metadata mismatch"
        assert sorted(f.keys()) == sorted(tensors), "tensor names mismatch"
        for k, t in tensors.items():
            u = f.get_tensor(k)
            assert u.dtype == t.dtype and u.shape == t.shape and torch.equal(u, t), k
    print("round-trip through safetensors.safe_open: ok")


def flat(tensors):
    return torch.cat([t.detach().reshape(-1) for t in tensors]).contiguous()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output .safetensors path")
    ap.add_argument("--nf", type=int, default=2)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--head-lo", type=int, default=2,
                    help="first class of the masked head (offset1)")
    ap.add_argument("--head-hi", type=int, default=5,
                    help="one past the last class of the masked head (offset2)")
    ap.add_argument("--ref", default=os.environ.get("GEM_REF", "/work/peers/gem-ref"),
                    help="checkout of the GEM reference (contains model/common.py)")
    args = ap.parse_args()
    lo, hi = args.head_lo, args.head_hi
    if not (0 <= lo < hi <= args.classes):
        ap.error("need 0 <= head-lo < head-hi <= classes")

    sys.path.insert(0, args.ref)
    from model.common import ResNet18  # noqa: E402

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(args.seed)

    # 1. network with torch default init, training mode
    net = ResNet18(args.classes, nf=args.nf)
    net.train()

    # 2./8. fixed, seeded inputs and labels
    x = torch.rand(args.batch, 3 * 32 * 32, dtype=torch.float32)
    y = torch.randint(0, args.classes, (args.batch,), dtype=torch.int64)
    y_head = torch.randint(lo, hi, (args.batch,), dtype=torch.int64)

    # 3. initial parameters and their layout
    named = list(net.named_parameters())
    assert [id(p) for _, p in named] == [id(p) for p in net.parameters()]
    params = flat(p for _, p in named)
    param_meta = [{"name": n, "shape": list(p.shape)} for n, p in named]
    bns = [(n, m) for n, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [id(m) for _, m in bns] == [id(m) for m in net.modules()
                                         if isinstance(m, torch.nn.BatchNorm2d)]
    bn_meta = [{"name": n, "channels": m.num_features} for n, m in bns]
    for _, m in bns:
        assert m.momentum == 0.1 and m.eps == 1e-5 and m.affine and m.track_running_stats

    # fresh copy of the initial network for the masked-head case
    net_head = copy.deepcopy(net)

    # 4. training-mode forward, loss, gradient
    net.zero_grad()
    train_logits = net(x)
    loss = F.cross_entropy(train_logits, y)
    loss.backward()
    grad = flat(p.grad for p in net.parameters())

    # 5. BatchNorm running statistics after that one forward
    running_mean = flat(m.running_mean for _, m in bns)
    running_var = flat(m.running_var for _, m in bns)

    # 6. eval-mode forward
    net.eval()
    with torch.no_grad():
        eval_logits = net(x)

    # 7. masked head, exactly as gem.py on CIFAR: Net.forward fills the
    # logits outside [offset1, offset2) with -10e10 through `.data` (no autograd
    # effect), then observe() computes ce(forward(x, t)[:, offset1:offset2],
    # y - offset1).
    net_head.train()
    net_head.zero_grad()
    output = net_head(x)
    if lo > 0:
        output[:, :lo].data.fill_(-10e10)
    if hi < args.classes:
        output[:, hi:args.classes].data.fill_(-10e10)
    masked_loss = torch.nn.CrossEntropyLoss()(output[:, lo:hi], y_head - lo)
    masked_loss.backward()
    masked_grad = flat(p.grad for p in net_head.parameters())

    tensors = {
        "params": params,
        "x": x.contiguous(),
        "y": y,
        "y_head": y_head,
        "train_logits": train_logits.detach().contiguous(),
        "loss": loss.detach().reshape(1),
        "grad": grad,
        "running_mean": running_mean,
        "running_var": running_var,
        "eval_logits": eval_logits.detach().contiguous(),
        "masked_loss": masked_loss.detach().reshape(1),
        "masked_grad": masked_grad,
    }
    for k, t in tensors.items():
        assert t.dtype in (torch.float32, torch.int64), k

    metadata = {
        "parameters": json.dumps(param_meta, separators=(",", ":")),
        "batchnorms": json.dumps(bn_meta, separators=(",", ":")),
        "masking": (
            f"Reproduces GEM's CIFAR observe() loss for the head [{lo}, {hi}): logits "
            f"outside the head are filled with -10e10 via .data (as Net.forward does, "
            f"no gradient effect), then nn.CrossEntropyLoss() (mean) is applied to "
            f"logits[:, {lo}:{hi}] with labels y_head - {lo}, on a fresh copy of the "
            f"initial network in train mode."
        ),
        "nf": str(args.nf),
        "classes": str(args.classes),
        "batch": str(args.batch),
        "seed": str(args.seed),
        "head": json.dumps([lo, hi]),
        "bn_momentum": "0.1",
        "bn_eps": "1e-05",
        "input_layout": "x is (batch, 3072) = (batch, 3, 32, 32) channel-major CHW, uniform [0,1)",
        "torch_version": torch.__version__,
        "generator": "scripts/resnet-fixture.py",
    }

    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    write_safetensors(args.out, tensors, metadata)
    check_roundtrip(args.out, tensors, metadata)

    n_params = params.numel()
    print(f"parameters:   {n_params} in {len(named)} tensors, "
          f"{len(bns)} BatchNorm layers ({running_mean.numel()} channels)")
    print(f"loss:         {loss.item():.9g}")
    print(f"masked_loss:  {masked_loss.item():.9g} (head [{lo}, {hi}))")
    print(f"|grad|:       {grad.norm().item():.9g}   |masked_grad|: {masked_grad.norm().item():.9g}")
    for k, t in tensors.items():
        print(f"  {k:13s} {str(t.dtype).replace('torch.', ''):8s} {list(t.shape)}")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
