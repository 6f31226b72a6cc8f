"""The baseline every comparison in benchmarks/ runs against: a plain PyTorch GAN loop, written the way
PyTorch-GAN-style scripts write it, on the identical networks that ganforge builds.

fp32, default memory format, default Adam(2e-4, beta1 0.5), zero_grad / forward / backward / step, G updated
first, then D on the real batch and on the detached fake batch (two D passes on fake per step),
BCE-with-logits losses, a shuffling DataLoader, samples taken in train mode as those scripts save them.

`PlainProGAN` is the same kind of baseline for Progressive GAN: a plain WGAN-GP step (with the drift term) as
the official code and typical PyTorch ports write it, on the identical networks ganforge builds, at one stage
of the growth (`set_growth`).

`PlainSAGAN` is SAGAN's: a hinge-loss TTUR step as the popular public ports write it (heykeetae/Self-Attention-GAN,
BigGAN-PyTorch), on ganforge's networks with every self-attention layer in the ports' explicit bmm + softmax
form (`use_bmm_attention`).
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from ganforge.models.layers import downscale2d, upscale2d
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


class PlainProGAN:
    """A plain WGAN-GP Progressive GAN step on ganforge's networks (built by ganforge's builder from `arch`, the
    same seed, so the layers and initial weights are identical), trained the plain way: fp32, contiguous
    tensors, default `torch.optim.Adam(lr=1e-3, betas=(0, 0.99))`, no requires_grad freezing.

    D step: fresh z, fake = G(z).detach(), D(real), D(fake), gradient penalty (lambda 10, target 1: the
    recipe config's) on lerp(real, fake, u) through torch.autograd.grad(create_graph=True), drift
    0.001 * D(real)^2.
    G step: fresh z, a second G forward, loss -D(G(z)).mean() (the official code's order and latents).
    The networks run at the stage `set_growth(resolution, alpha)` sets; while a stage fades in (alpha < 1)
    the reals are faded alike (official code: process_reals)."""

    def __init__(self, model: str, arch, resolution: int, channels: int, batch: int, stage: int | None = None,
                 alpha: float = 1.0, seed: int = 0, device="cpu", gp_weight: float = 10.0, gp_target: float = 1.0,
                 drift: float = 0.001):
        spec = get_model(model)
        torch.manual_seed(seed)
        G, D = spec.build(arch, resolution, channels)
        self.G, self.D, self.device = G.to(device), D.to(device), device
        self.alpha = float(alpha)
        for net in (self.G, self.D):
            net.set_growth(stage or resolution, self.alpha)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=1e-3, betas=(0.0, 0.99))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=1e-3, betas=(0.0, 0.99))
        self.batch, self.z_dim = batch, self.G.z_dim
        self.gp_weight, self.gp_target, self.drift = gp_weight, gp_target, drift

    def step(self, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.alpha < 1.0:
            real = torch.lerp(upscale2d(downscale2d(real)), real, self.alpha)
        # D
        z = torch.randn(self.batch, self.z_dim, device=self.device)
        fake = self.G(z).detach()
        self.opt_D.zero_grad()
        d_real = self.D(real)
        d_fake = self.D(fake)
        u = torch.rand(self.batch, 1, 1, 1, device=self.device)
        mixed = torch.lerp(real, fake, u).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.D(mixed).sum(), mixed, create_graph=True)
        gp = (grad.flatten(1).norm(dim=1) - self.gp_target).square().mean() / self.gp_target ** 2
        d_loss = d_fake.mean() - d_real.mean() + self.gp_weight * gp + self.drift * d_real.square().mean()
        d_loss.backward()
        self.opt_D.step()
        # G
        z = torch.randn(self.batch, self.z_dim, device=self.device)
        self.opt_G.zero_grad()
        g_loss = -self.D(self.G(z)).mean()
        g_loss.backward()
        self.opt_G.step()
        return d_loss.detach(), g_loss.detach()


class PlainStyleGAN2:
    """A plain StyleGAN2 step on ganforge's networks (same builder, `arch`, seed: identical layers and initial
    weights), written the way the popular PyTorch ports write their loop (rosinality/stylegan2-pytorch's
    train.py): fp32, contiguous tensors, default `torch.optim.Adam` with the lazy-regularisation rescaling, the
    modulated convolutions as one grouped convolution per layer in training too (`fused_modconv="always"`), no
    requires_grad freezing.

    D step: fresh z (style mixing with probability 0.9), fake = G(z).detach(), logistic loss on D(real), D(fake);
    every 16 steps a separate R1 pass (gamma/2 * 16 * ||grad D(real)||^2).
    G step: fresh z, a second G forward, non-saturating loss; every 4 steps a separate path-length pass on
    half the batch (weight 2 * 4, running mean decay 0.01). `mixing` and `pl_weight` follow ganforge's recipe
    (its CPU preset has neither), so both sides do the same work."""

    def __init__(self, arch, resolution: int, channels: int, batch: int, lr: float = 2e-3, r1_gamma: float = 10.0,
                 seed: int = 0, device="cpu", fused: str = "always", mixing: float = 0.9, pl_weight: float = 2.0):
        import dataclasses

        spec = get_model("stylegan2")
        torch.manual_seed(seed)
        G, D = spec.build(dataclasses.replace(arch, fused_modconv=fused), resolution, channels)
        self.G, self.D, self.device = G.to(device), D.to(device), device
        cd, cg = 16 / 17, (4 / 5 if pl_weight > 0 else 1.0)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=lr * cg, betas=(0.0, 0.99 ** cg))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=lr * cd, betas=(0.0, 0.99 ** cd))
        self.batch, self.z_dim, self.gamma = batch, self.G.z_dim, r1_gamma
        self.pl_mean = torch.zeros((), device=device)
        self.mixing, self.pl_weight = mixing, pl_weight
        self.i = 0

    def _inputs(self, n: int) -> dict:
        z = torch.randn(n, self.z_dim, device=self.device)
        noise = [torch.randn(n, *s, device=self.device) for s in self.G.noise_shapes()]
        out = {"z": z, "noise": noise}
        if self.mixing > 0 and torch.rand(()) < self.mixing:
            out["z2"] = torch.randn(n, self.z_dim, device=self.device)
            out["mix_cutoff"] = int(torch.randint(1, self.G.num_ws, ()))
        return out

    def step(self, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        F = torch.nn.functional
        # D
        fake = self.G(**self._inputs(self.batch)).detach()
        d_loss = F.softplus(-self.D(real)).mean() + F.softplus(self.D(fake)).mean()
        self.opt_D.zero_grad()
        d_loss.backward()
        self.opt_D.step()
        if self.i % 16 == 0:
            x = real.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.D(x).sum(), x, create_graph=True)
            r1 = g.square().flatten(1).sum(1).mean() * (self.gamma / 2 * 16)
            self.opt_D.zero_grad()
            r1.backward()
            self.opt_D.step()
        # G
        g_loss = F.softplus(-self.D(self.G(**self._inputs(self.batch)))).mean()
        self.opt_G.zero_grad()
        g_loss.backward()
        self.opt_G.step()
        if self.pl_weight > 0 and self.i % 4 == 0:
            inp = self._inputs(max(1, self.batch // 2))
            ws = self.G.ws(inp["z"], inp.get("z2"), inp.get("mix_cutoff"))
            img = self.G.synthesis(ws, inp["noise"])
            y = torch.randn_like(img) / (img.shape[2] * img.shape[3]) ** 0.5
            (g,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
            lengths = g.square().sum(2).mean(1).sqrt()
            self.pl_mean = self.pl_mean.lerp(lengths.detach().mean(), 0.01)
            pl = (lengths - self.pl_mean).square().mean() * (self.pl_weight * 4)
            self.opt_G.zero_grad()
            pl.backward()
            self.opt_G.step()
        self.i += 1
        return d_loss.detach(), g_loss.detach()


def bmm_attention_forward(self, x: torch.Tensor) -> torch.Tensor:
    """SAGAN's self-attention the way the popular PyTorch ports write it (heykeetae/Self-Attention-GAN's
    Self_Attn, BigGAN-PyTorch's Attention): the energy matrix from one bmm, an explicit softmax over it, a second
    bmm with the values, all in [B, N, N'] memory. On ganforge's SelfAttention module (its 1x1 convolutions, its
    gamma), so the arithmetic is exactly the module's: x + gamma * out(softmax(q k^T) v), no 1/sqrt(d) scaling."""
    n, _, h, w = x.shape
    q = self.query(x).view(n, -1, h * w).permute(0, 2, 1)           # B x N x d
    kx, vx = self.key(x), self.value(x)
    if self.pool:  # the authors' released code: keys and values max-pooled 2x2
        kx, vx = F.max_pool2d(kx, 2), F.max_pool2d(vx, 2)
    k = kx.view(n, -1, kx.shape[2] * kx.shape[3])                    # B x d x N'
    energy = torch.bmm(q, k)                                          # B x N x N'
    attention = F.softmax(energy, dim=-1)
    v = vx.view(n, -1, vx.shape[2] * vx.shape[3])                    # B x dv x N'
    o = torch.bmm(v, attention.permute(0, 2, 1)).view(n, -1, h, w)    # B x dv x H x W
    return x + self.gamma * self.out(o)


def use_bmm_attention(net: torch.nn.Module) -> torch.nn.Module:
    """Every ganforge SelfAttention in `net` runs `bmm_attention_forward` instead of its fused
    scaled_dot_product_attention (an instance attribute: the module, its parameters and buffers stay as built)."""
    import types

    from ganforge.models.sagan import SelfAttention

    for m in net.modules():
        if isinstance(m, SelfAttention):
            m.forward = types.MethodType(bmm_attention_forward, m)
    return net


class PlainSAGAN:
    """A plain SAGAN step on ganforge's networks (ganforge's builder from `arch`, the same seed: identical layers,
    spectral norms and initial weights), written the way the popular public ports write theirs
    (heykeetae/Self-Attention-GAN's trainer, BigGAN-PyTorch's train_fns): fp32, contiguous (NCHW) tensors,
    default `torch.optim.Adam` with SAGAN's TTUR (D lr 4e-4, G lr 1e-4, betas (0, 0.9)), every self-attention
    layer in the explicit bmm + softmax form (`use_bmm_attention`), no requires_grad freezing, no EMA.

    D step: fresh z, fake = G(z, c) without a graph (BigGAN-PyTorch's `train_G=False`), hinge loss on D(real, c)
    and D(fake, c) as two passes. G step: fresh z, a second G forward, loss -D(G(z, c), c).mean(). Class-
    conditional: c is the batch's labels for real and fake alike (ganforge's recipe does the same)."""

    def __init__(self, arch, resolution: int, channels: int, batch: int, lr_g: float = 1e-4, lr_d: float = 4e-4,
                 betas: tuple = (0.0, 0.9), seed: int = 0, device="cpu"):
        spec = get_model("sagan")
        torch.manual_seed(seed)
        G, D = spec.build(arch, resolution, channels)
        self.G, self.D = use_bmm_attention(G.to(device)), use_bmm_attention(D.to(device))
        self.device, self.batch, self.z_dim = device, batch, self.G.z_dim
        self.num_classes = self.G.num_classes
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=lr_g, betas=tuple(betas))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=lr_d, betas=tuple(betas))

    def step(self, real: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        c = labels if self.num_classes else None
        # D
        z = torch.randn(self.batch, self.z_dim, device=self.device)
        with torch.no_grad():
            fake = self.G(z, c)
        self.opt_D.zero_grad()
        d_loss = F.relu(1.0 - self.D(real, c)).mean() + F.relu(1.0 + self.D(fake, c)).mean()
        d_loss.backward()
        self.opt_D.step()
        # G
        z = torch.randn(self.batch, self.z_dim, device=self.device)
        self.opt_G.zero_grad()
        g_loss = -self.D(self.G(z, c), c).mean()
        g_loss.backward()
        self.opt_G.step()
        return d_loss.detach(), g_loss.detach()


class PlainPix2Pix:
    """A plain pix2pix step on ganforge's networks (ganforge's builder from `arch`, the same seed: identical U-Net
    and PatchGAN, identical initial weights), written as junyanz/pytorch-CycleGAN-and-pix2pix's `Pix2PixModel`
    writes it: fp32, contiguous (NCHW) tensors, default `torch.optim.Adam(lr 2e-4, betas (0.5, 0.999))`.

    forward: fake_B = G(real_A). D step: BCE-with-logits of D(cat(A, fake_B.detach())) against a tensor of zeros
    and of D(cat(A, real_B)) against ones, halved. G step, D's weights frozen (set_requires_grad(D, False), as
    that code does): BCE of D(cat(A, fake_B)) against ones plus 100 x L1(fake_B, real_B)."""

    def __init__(self, arch, resolution: int, channels: int, batch: int, lr: float = 2e-4, lambda_l1: float = 100.0,
                 seed: int = 0, device="cpu"):
        spec = get_model("pix2pix")
        torch.manual_seed(seed)
        G, D = spec.build(arch, resolution, channels)
        self.G, self.D, self.lambda_l1 = G.to(device), D.to(device), lambda_l1
        self.conditional = D.conditional
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=lr, betas=(0.5, 0.999))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=lr, betas=(0.5, 0.999))
        self.bce = torch.nn.BCEWithLogitsLoss()

    def _gan(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
        return self.bce(logits, torch.ones_like(logits) if real else torch.zeros_like(logits))

    def _d(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # the port concatenates itself and calls an unconditional netD; ours takes the pair (the same tensors)
        return self.D(b, a) if self.conditional else self.D(b)

    def step(self, real_b: torch.Tensor, real_a: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        real_a = real_b.flip(-1) if real_a is None else real_a
        fake_b = self.G(real_a)
        # D
        for p in self.D.parameters():
            p.requires_grad_(True)
        self.opt_D.zero_grad()
        d_loss = (self._gan(self._d(real_a, fake_b.detach()), False) + self._gan(self._d(real_a, real_b), True)) * 0.5
        d_loss.backward()
        self.opt_D.step()
        # G
        for p in self.D.parameters():
            p.requires_grad_(False)
        self.opt_G.zero_grad()
        g_loss = self._gan(self._d(real_a, fake_b), True) + self.lambda_l1 * F.l1_loss(fake_b, real_b)
        g_loss.backward()
        self.opt_G.step()
        return d_loss.detach(), g_loss.detach()
