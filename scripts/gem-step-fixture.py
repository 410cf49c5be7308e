#!/usr/bin/env python3
"""Generate the GEM two-step fixture for the Rust `episodic` GEM on the ResNet.

The fixture records two calls of the GEM reference's own `model.gem.Net.observe`
(facebookresearch/GradientEpisodicMemory) on the CIFAR protocol
(data_file='cifar100.pt': reduced ResNet-18 and per-task heads), with the
network replaced by `ResNet18(10, nf)` (nf=2 by default), 2 tasks of 5 classes,
n_memories=4, lr=0.1, memory_strength=0.5, in float32 on the CPU:

  xA, yA        batch A (4 x 3072, uniform [0,1)), labels in task 0's classes [0,5)
  xB, yB        batch B, labels in task 1's classes [5,10)
  params0       parameters before any step, flat, in net.net.parameters() order
  params1       after net.observe(xA, 0, yA)   (plain SGD step, memory[0] <- batch A)
  running_mean1 BatchNorm running statistics after step 1, concatenated over the
  running_var1  BatchNorm modules in net.net.modules() order
  params2       after net.observe(xB, 1, yB)   (GEM step against task 0's memory)
  running_mean2 BatchNorm running statistics after step 2
  running_var2
  g0            step 2's past-task gradient (task 0's memory, head [0,5)) = grads[:,0]
  g1            step 2's batch gradient (batch B, head [5,10)), BEFORE projection
  g1_projected  the gradient actually applied in step 2 (= grads[:,1] after observe)
  dotp          <g1, g0> exactly as gem.py computes it (float32 torch.mm), shape [1]
  qp_v          the dual solution quadprog returned in project2cone2 (float64), [1]
  losses        [step 1 batch loss, step 2 memory loss, step 2 batch loss]

The seed is the first of 0, 1, 2, ... whose step 2 is projected (<g1, g0> < 0).

Note: project2cone2 writes the projected gradient in place into the view
grads[:, t].unsqueeze(1), so after observe() net.grads[:, 1] holds the projected
gradient; the unprojected g1 is captured by wrapping model.gem.project2cone2.

Usage (from the repository root):

  /work/peers/venv/bin/python scripts/gem-step-fixture.py \
      --out crates/episodic/tests/fixtures/gem-step-nf2.safetensors

The reference is imported from --ref (default /work/peers/gem-ref, or $GEM_REF).
Requires torch, numpy and quadprog; the `safetensors` Python package, if
installed, is used to verify the written file. Output is byte-identical across runs.
"""

import argparse
import importlib.util
import json
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.optim as optim


# The canonical safetensors writer and its round-trip check are resnet-fixture.py's.
_fixture = importlib.util.spec_from_file_location(
    "resnet_fixture", os.path.join(os.path.dirname(os.path.abspath(__file__)), "resnet-fixture.py"))
_module = importlib.util.module_from_spec(_fixture)
_fixture.loader.exec_module(_module)
write_safetensors = _module.write_safetensors
check_roundtrip = _module.check_roundtrip
DTYPES = _module.DTYPES


def flat(tensors):
    return torch.cat([t.detach().reshape(-1) for t in tensors]).contiguous()


def bn_modules(net):
    return [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]


def bn_stats(net):
    bns = bn_modules(net)
    return (flat(m.running_mean for m in bns).clone(),
            flat(m.running_var for m in bns).clone())


class RecordingCE(nn.Module):
    """nn.CrossEntropyLoss that records each loss value (no other effect)."""

    def __init__(self):
        super().__init__()
        self.ce = nn.CrossEntropyLoss()
        self.values = []

    def forward(self, logits, target):
        loss = self.ce(logits, target)
        self.values.append(loss.detach().clone().reshape(1))
        return loss


def run(seed, a, gem, common):
    """Two observe() calls with the given seed; returns (tensors, info)."""
    torch.manual_seed(seed)

    ns = argparse.Namespace(
        n_layers=2, n_hiddens=100,        # read by the constructor, unused on CIFAR
        lr=a.lr, cuda=False, n_memories=a.n_memories,
        memory_strength=a.memory_strength, data_file="cifar100.pt")
    net = gem.Net(3 * 32 * 32, a.classes, a.tasks, ns)
    assert net.is_cifar and net.nc_per_task == a.classes // a.tasks

    # Replace the default nf=20 ResNet with the small one and rebuild everything
    # the constructor derives from the network's parameters, exactly as it does.
    net.net = common.ResNet18(a.classes, nf=a.nf)
    net.opt = optim.SGD(net.parameters(), ns.lr)
    net.grad_dims = []
    for param in net.parameters():
        net.grad_dims.append(param.data.numel())
    net.grads = torch.Tensor(sum(net.grad_dims), a.tasks)
    # Net's only parameters are its network's (nn.CrossEntropyLoss has none).
    assert [id(p) for p in net.parameters()] == [id(p) for p in net.net.parameters()]
    for m in bn_modules(net.net):
        assert m.momentum == 0.1 and m.eps == 1e-5 and m.affine and m.track_running_stats

    net.ce = RecordingCE()

    n = a.n_memories
    nc = net.nc_per_task
    xA = torch.rand(n, 3 * 32 * 32, dtype=torch.float32)
    yA = torch.randint(0, nc, (n,), dtype=torch.int64)
    xB = torch.rand(n, 3 * 32 * 32, dtype=torch.float32)
    yB = torch.randint(nc, 2 * nc, (n,), dtype=torch.int64)

    # Capture project2cone2's inputs and its dual solution.
    captured = {}
    orig_p2c2 = gem.project2cone2
    orig_solve = gem.quadprog.solve_qp

    def solve_qp(*args, **kw):
        res = orig_solve(*args, **kw)
        captured["v"] = torch.from_numpy(res[0].copy()).to(torch.float64)
        return res

    def p2c2(gradient, memories, margin=0.5, eps=1e-3):
        captured["g1"] = gradient.detach().clone().reshape(-1)
        captured["margin"] = margin
        captured["eps"] = eps
        gem.quadprog.solve_qp = solve_qp
        try:
            # pass margin positionally, as gem.py does, and eps as its default
            return orig_p2c2(gradient, memories, margin)
        finally:
            gem.quadprog.solve_qp = orig_solve

    gem.project2cone2 = p2c2
    try:
        params0 = flat(net.net.parameters()).clone()

        net.train()                       # main.py calls model.train() before observe
        net.observe(xA, 0, yA)
        params1 = flat(net.net.parameters()).clone()
        rm1, rv1 = bn_stats(net.net)
        assert torch.equal(net.memory_data[0], xA) and torch.equal(net.memory_labs[0], yA)
        assert net.mem_cnt == 0 and net.observed_tasks == [0]

        net.train()
        net.observe(xB, 1, yB)
        params2 = flat(net.net.parameters()).clone()
        rm2, rv2 = bn_stats(net.net)
        assert torch.equal(net.memory_data[1], xB) and torch.equal(net.memory_labs[1], yB)
        assert net.observed_tasks == [0, 1]
    finally:
        gem.project2cone2 = orig_p2c2

    projected = "g1" in captured
    g0 = net.grads[:, 0].clone()
    if projected:
        g1 = captured["g1"]
        g1_proj = net.grads[:, 1].clone()
        # the same expression gem.py evaluates, on the unprojected column
        grads = net.grads.clone()
        grads[:, 1].copy_(g1)
    else:
        g1 = net.grads[:, 1].clone()
        g1_proj = g1.clone()
        grads = net.grads
    indx = torch.LongTensor([0])
    dotp = torch.mm(grads[:, 1].unsqueeze(0), grads.index_select(1, indx)).reshape(1)
    assert bool((dotp < 0).sum() != 0) == projected

    losses = torch.cat(net.ce.values)
    assert losses.numel() == 3, losses
    tensors = {
        "xA": xA.contiguous(), "yA": yA, "xB": xB.contiguous(), "yB": yB,
        "params0": params0, "params1": params1, "params2": params2,
        "running_mean1": rm1, "running_var1": rv1,
        "running_mean2": rm2, "running_var2": rv2,
        "g0": g0.contiguous(), "g1": g1.contiguous(),
        "g1_projected": g1_proj.contiguous(),
        "dotp": dotp.contiguous(), "losses": losses,
    }
    if projected:
        tensors["qp_v"] = captured["v"]
    info = {"projected": projected, "net": net, "captured": captured}
    return tensors, info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output .safetensors path")
    ap.add_argument("--nf", type=int, default=2)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--tasks", type=int, default=2)
    ap.add_argument("--n-memories", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--memory-strength", type=float, default=0.5)
    ap.add_argument("--max-seed", type=int, default=1000)
    ap.add_argument("--ref", default=os.environ.get("GEM_REF", "/work/peers/gem-ref"),
                    help="checkout of the GEM reference (contains model/gem.py)")
    a = ap.parse_args()
    assert a.tasks == 2, "the fixture is defined for two tasks"

    sys.path.insert(0, a.ref)
    import model.gem as gem          # noqa: E402
    import model.common as common    # noqa: E402

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)

    for seed in range(a.max_seed):
        tensors, info = run(seed, a, gem, common)
        print(f"seed {seed}: <g1,g0> = {tensors['dotp'].item():.9g}, "
              f"projected = {info['projected']}")
        if info["projected"]:
            break
    else:
        sys.exit(f"no projected step for seeds 0..{a.max_seed - 1}")

    cap = info["captured"]
    net = info["net"]
    # project2cone2 with one past task: v = max(margin, -<g1,g0> / (|g0|^2 + eps))
    g0d, g1d = tensors["g0"].double(), tensors["g1"].double()
    v_closed = max(cap["margin"], -(g0d @ g1d).item() / ((g0d @ g0d).item() + cap["eps"]))
    assert abs(v_closed - tensors["qp_v"].item()) <= 1e-9 * max(1.0, abs(v_closed)), \
        (v_closed, tensors["qp_v"].item())
    expect = (tensors["qp_v"].item() * g0d + g1d).float()
    assert torch.equal(expect, tensors["g1_projected"]), "projected gradient mismatch"
    # SGD step: params2 = params1 - lr * g1_projected
    assert torch.allclose(tensors["params2"],
                          tensors["params1"] - a.lr * tensors["g1_projected"],
                          rtol=0, atol=1e-6)

    named = list(net.net.named_parameters())
    param_meta = [{"name": n_, "shape": list(p.shape)} for n_, p in named]
    bn_meta = [{"name": n_, "channels": m.num_features}
               for n_, m in net.net.named_modules() if isinstance(m, nn.BatchNorm2d)]

    metadata = {
        "nf": str(a.nf),
        "classes": str(a.classes),
        "tasks": str(a.tasks),
        "n_memories": str(a.n_memories),
        "batch": str(a.n_memories),
        "lr": repr(a.lr),
        "memory_strength": repr(a.memory_strength),
        "margin": repr(cap["margin"]),
        "eps": repr(cap["eps"]),
        "seed": str(seed),
        "projected": "true",
        "torch_version": torch.__version__,
        "generator": "scripts/gem-step-fixture.py",
        "parameters": json.dumps(param_meta, separators=(",", ":")),
        "batchnorms": json.dumps(bn_meta, separators=(",", ":")),
        "heads": (
            "CIFAR per-task heads: nc_per_task = classes / tasks; task t uses "
            "classes [t*nc, (t+1)*nc). In observe, both the memory loss of a past "
            "task pt and the current batch loss are nn.CrossEntropyLoss() (mean) of "
            "forward(x, task)[:, offset1:offset2] with labels y - offset1, where "
            "forward fills logits outside the task's head with -10e10 via .data "
            "(no gradient effect)."
        ),
        "pass_order": (
            "Inside observe (net in train mode): the task's memory ring buffer is "
            "written first (step 2 stores batch B in memory[1]); then, for each "
            "previously observed task, zero_grad + forward/backward on that task's "
            "memory (step 2: memory[0] = batch A, head [0,5)) and store_grad into "
            "grads[:,pt]; then zero_grad + forward/backward on the current batch "
            "(step 2: batch B, head [5,10)) and store_grad into grads[:,t]; if "
            "<grads[:,t], grads[:,pt]> < 0, project2cone2 + overwrite_grad; then "
            "opt.step() (plain SGD). Each forward updates the BatchNorm running "
            "statistics (momentum 0.1, unbiased variance): step 1 once with batch A, "
            "step 2 first with memory[0] (batch A) then with batch B, all at the "
            "parameters before the step."
        ),
        "projection": (
            "project2cone2(g, M, margin=memory_strength, eps=1e-3) in float64: "
            "P = M M^T, P = (P+P^T)/2 + eps*I, q = -M g, v = quadprog.solve_qp(P, q, "
            "I, margin*1)[0] (i.e. min 1/2 v'Pv + (Mg)'v s.t. v >= margin), "
            "g~ = v M + g, cast to float32 and written over grads[:,t] and the "
            "parameter gradients. With one past task: v = max(margin, "
            "-<g,g0>/(|g0|^2+eps))."
        ),
        "losses": "[step 1 batch A loss, step 2 memory[0] loss, step 2 batch B loss]",
        "input_layout": "x is (batch, 3072) = (batch, 3, 32, 32) channel-major CHW, uniform [0,1)",
        "rng_order": (
            "torch.manual_seed(seed); Net(...) builds ResNet18(10) at nf=20 (draws "
            "discarded); ResNet18(10, nf) (params0); xA = rand(4,3072); "
            "yA = randint(0,5,(4,)); xB = rand(4,3072); yB = randint(5,10,(4,))"
        ),
    }
    for k, t in tensors.items():
        assert t.dtype in DTYPES, k

    out_dir = os.path.dirname(os.path.abspath(a.out))
    os.makedirs(out_dir, exist_ok=True)
    write_safetensors(a.out, tensors, metadata)
    check_roundtrip(a.out, tensors, metadata)

    print(f"seed:          {seed}")
    print(f"<g1,g0>:       {tensors['dotp'].item():.9g}")
    print(f"|g0|, |g1|:    {tensors['g0'].norm().item():.9g}, {tensors['g1'].norm().item():.9g}")
    print(f"qp_v:          {tensors['qp_v'].item():.17g}")
    print(f"losses:        {[round(v, 9) for v in tensors['losses'].tolist()]}")
    print(f"margin, eps:   {cap['margin']}, {cap['eps']}")
    for k in sorted(tensors):
        t = tensors[k]
        print(f"  {k:14s} {str(t.dtype).replace('torch.', ''):8s} {list(t.shape)}")
    print(f"wrote {a.out} ({os.path.getsize(a.out)} bytes)")


if __name__ == "__main__":
    main()
