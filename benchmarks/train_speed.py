"""Training-step speed against a plain PyTorch loop: `ganforge bench` (ganforge.bench.speed), also run as

    python benchmarks/train_speed.py [--models dcgan,gan] [--resolution 64] [--json docs/results/speed.json]
"""
from ganforge.bench.speed import main

if __name__ == "__main__":
    main()
