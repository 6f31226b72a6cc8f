"""How well a translation model (pix2pix) does on held-out pairs: L1 to the ground truth, and the FID/KID of
its outputs against the ground-truth images (the paper's two views: pixel fidelity, and whether the outputs
look like real images of the target domain; section 4.2 and table 1)."""
from __future__ import annotations

import torch

from ..registry import GanforgeError


def held_out_pairs(gen, data: str | None = None, split: str = "test", n: int | None = None, seed: int = 0):
    """The pairs a translator is judged on: `split` of its training data (or of `data`), at its resolution and
    channels, in its direction. Returns (ImageData, indices)."""
    from ..data.sources import load_data

    cfg = gen.cfg
    pairs = load_data(data or cfg.data.name, gen.resolution, split=split, channels=gen.channels,
                      needs={"image", "source"}, stream="never", direction=cfg.data.direction)
    idx = torch.arange(len(pairs))
    if n is not None and n < len(pairs):
        idx = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))[:n]
    return pairs, idx


def translation_metrics(gen, data: str | None = None, split: str = "test", n: int | None = None, seed: int = 0,
                        metrics=("fid", "kid"), extractor: str | None = None, kid_subset_size: int = 1000,
                        device: str | None = None, outputs: bool = False) -> dict:
    """L1 (mean absolute error in [0, 1] pixel units) and `metrics` of the translations of `n` held-out pairs
    (all of them by default) against their targets. With `outputs`, also returns the translated images under
    "images" (with "sources" and "targets"), for pictures."""
    from ..data.sources import to_unit_range
    from .evaluate import ImageSet, evaluate

    if not gen.translates:
        raise GanforgeError(f"{gen.origin} is a {gen.cfg.model}; translation metrics need a translation model")
    pairs, idx = held_out_pairs(gen, data, split, n, seed)
    taken = pairs.take(idx)
    source, target = to_unit_range(taken["source"]), taken["image"]
    fake = gen.translate(source, seed=seed)
    target_f = to_unit_range(target)
    l1 = (fake - target_f).abs().mean().item() / 2
    fake_u8 = ((fake + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    kid = max(2, min(kid_subset_size, len(idx) // 2))
    res = evaluate(ImageSet(fake_u8, f"{gen.cfg.model} outputs ({gen.source})", pairs.name),
                   ImageSet(target, f"{pairs.name} {split} targets", pairs.name), tuple(metrics), extractor,
                   kid_subset_size=kid, device=device)
    res = {"l1": round(l1, 5), **res, "pairs": {"data": pairs.name, "split": split, "n": len(idx)}}
    if outputs:
        res["images"] = {"sources": source, "outputs": fake, "targets": target_f}
    return res
