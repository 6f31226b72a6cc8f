"""The baseline every comparison in benchmarks/ runs against: a plain PyTorch GAN loop, written the way
PyTorch-GAN-style scripts write it, on the identical networks that ganforge builds.

fp32, default memory format, default Adam(2e-4, beta1 0.5), zero_grad / forward / backward / step, G updated
first, then D on the real batch and on the detached fake batch (two D passes on fake per step),
BCE-with-logits losses, a shuffling DataLoader, samples taken in train mode as those scripts save them.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from ganforge.registry import get_model


class PlainLoop:
    def __init__(self, model: str, resolution: int, channels: int, batch: int, seed: int = 0, device="cpu"):
        spec = get_model(model)
        torch.manual_seed(seed)
        G, D = spec.build(spec.config_cls(), resolution, channels)
        self.G, self.D, self.device = G.to(device), D.to(device), device
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.valid, self.fake = torch.ones(batch, device=device), torch.zeros(batch, device=device)
        self.batch, self.z_dim = batch, self.G.z_dim

    def step(self, real: torch.Tensor) -> torch.Tensor:
        z = torch.randn(self.batch, self.z_dim, device=self.device)
        self.opt_G.zero_grad()
        gen = self.G(z)
        g_loss = F.binary_cross_entropy_with_logits(self.D(gen), self.valid)
        g_loss.backward()
        self.opt_G.step()
        self.opt_D.zero_grad()
        real_loss = F.binary_cross_entropy_with_logits(self.D(real), self.valid)
        fake_loss = F.binary_cross_entropy_with_logits(self.D(gen.detach()), self.fake)
        d_loss = (real_loss + fake_loss) / 2
        d_loss.backward()
        self.opt_D.step()
        return d_loss

    def train_for(self, images: torch.Tensor, minutes: float, log_every: int = 200) -> int:
        """Train on uint8 images [N, C, R, R] for `minutes` of wall time; returns the steps done."""
        data = torch.utils.data.TensorDataset(images)
        loader = torch.utils.data.DataLoader(data, batch_size=self.batch, shuffle=True, drop_last=True)
        end = time.monotonic() + minutes * 60
        steps = 0
        while time.monotonic() < end:
            for (x,) in loader:
                loss = self.step(x.to(self.device).float() / 127.5 - 1)
                steps += 1
                if steps % log_every == 0:
                    print(f"plain step {steps}: d_loss {loss.item():.3f}", flush=True)
                if time.monotonic() >= end:
                    break
        return steps

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.z_dim, generator=g)
        return torch.cat([self.G(c.to(self.device)).float().cpu() for c in z.split(64)])
