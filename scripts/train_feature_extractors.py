"""Train the domain classifiers that serve as feature extractors for Fashion-MNIST and MNIST.

Seeded and single-threaded-deterministic: the same command on the same machine gives the same weights.
Writes src/ganforge/metrics/weights/<dataset>-classifier.safetensors and prints the test accuracy.

    python scripts/train_feature_extractors.py --dataset fashion-mnist [--epochs 6]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ganforge.data import load_data
from ganforge.metrics.classifier import DomainClassifier, weights_path


def evaluate(net, data) -> float:
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(data), 1000):
            idx = torch.arange(i, min(i + 1000, len(data)))
            correct += (net(data.batch(idx)).argmax(1) == data.labels[idx]).sum().item()
    return correct / len(data)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "mnist"))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_flush_denormal(True)  # denormals slow CPU training ~10x
    train, test = load_data(args.dataset, 32, "train"), load_data(args.dataset, 32, "test")
    net = DomainClassifier()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=5e-4)
    steps = args.epochs * (len(train) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    g = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(len(train), generator=g)
        for i in range(0, len(train) - args.batch_size + 1, args.batch_size):
            idx = perm[i: i + args.batch_size]
            x = train.batch(idx)
            # light augmentation: random shifts of up to 2 px (the 28->32 padding leaves room)
            dx, dy = torch.randint(-2, 3, (2,), generator=g).tolist()
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(net(x), train.labels[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        acc = evaluate(net, test)
        print(f"epoch {epoch + 1}/{args.epochs}: test accuracy {acc:.4f} ({time.time() - t0:.0f} s)", flush=True)
    out = args.out or weights_path(args.dataset)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out),
              metadata={"dataset": args.dataset, "test_accuracy": f"{acc:.4f}", "epochs": str(args.epochs),
                        "seed": str(args.seed)})
    print(json.dumps({"dataset": args.dataset, "test_accuracy": round(acc, 4), "weights": str(out)}))


if __name__ == "__main__":
    main()
