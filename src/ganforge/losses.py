"""GAN losses as small pure functions of D's logits, chosen by name from LOSSES (never an `if` chain).

Each entry is (d_loss(real_logits, fake_logits), g_loss(fake_logits)); logits are float32 [N].
"""
from __future__ import annotations

import torch.nn.functional as F


def d_logistic(real, fake):
    # -log D(x) - log(1 - D(G(z))), with D = sigmoid(logits): Goodfellow et al. 2014, eq. 1.
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_minimax(fake):
    # G minimises log(1 - D(G(z))): the paper's value function; saturates early in training.
    return -F.softplus(fake).mean()


def g_nonsaturating(fake):
    # G maximises log D(G(z)) instead (Goodfellow et al. 2014, section 3): strong gradients early on.
    return F.softplus(-fake).mean()


def d_hinge(real, fake):
    # Lim & Ye 2017; Miyato et al. 2018; used by SAGAN.
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def g_hinge(fake):
    return -fake.mean()


def d_lsgan(real, fake):
    # Mao et al. 2017, least squares with targets 1 (real) and 0 (fake).
    return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake ** 2).mean()


def g_lsgan(fake):
    return 0.5 * ((fake - 1) ** 2).mean()


def d_wasserstein(real, fake):
    # Arjovsky et al. 2017; needs a Lipschitz D (gradient penalty or weight clipping) to mean anything.
    return fake.mean() - real.mean()


def g_wasserstein(fake):
    return -fake.mean()


LOSSES = {
    "nonsaturating": (d_logistic, g_nonsaturating),
    "minimax": (d_logistic, g_minimax),
    "hinge": (d_hinge, g_hinge),
    "lsgan": (d_lsgan, g_lsgan),
    "wasserstein": (d_wasserstein, g_wasserstein),
}

# Where D's output separates "real" from "fake" under each loss (the health monitor's D accuracy); the
# Wasserstein critic's output has no such boundary, so it has no entry.
DECISION_BOUNDARY = {"nonsaturating": 0.0, "minimax": 0.0, "hinge": 0.0, "lsgan": 0.5}
