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


def l1_error(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean absolute error of images in [-1, 1], in [0, 1] pixel units (what the benchmark tables report)."""
    return (outputs.float() - targets.float()).abs().mean().item() / 2


def eval_values(res: dict) -> dict:
    """evaluate()'s result as log values: every float metric under eval/, KID by its mean."""
    values = {f"eval/{k}": v for k, v in res.items() if isinstance(v, float)}
    if isinstance(res.get("kid"), dict):
        values["eval/kid"] = res["kid"]["mean"]
    return values


LAB_RANGES = {"L": (0.0, 100.0), "a": (-110.0, 110.0), "b": (-110.0, 110.0)}


def lab_histogram_intersection(fake: torch.Tensor, real: torch.Tensor, bins: int = 64) -> dict:
    """Colour images [N, 3, H, W] in [-1, 1] -> how well the outputs' colours match the truth's: the
    intersection (sum of the minima; 1 = the same distribution) of the histograms of L, a and b (CIE Lab) over
    the whole set, the paper's measure for colourisation (section 4.5, figure 7: L1 alone gives greyer,
    narrower a and b histograms than the truth), and the spread (std) of a and b of each, their colourfulness.
    Pixels that are plain white background in the truth (L > 97, |a|, |b| < 2: most of an emoji's square) are
    left out of both, so that the measure is about the objects' colours."""
    from skimage.color import rgb2lab

    def lab(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(rgb2lab(((x.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).double().numpy()))

    f, r = lab(fake), lab(real)
    mask = ~((r[..., 0] > 97) & (r[..., 1].abs() < 2) & (r[..., 2].abs() < 2))
    out: dict = {}
    for i, (name, (lo, hi)) in enumerate(LAB_RANGES.items()):
        hf, hr = torch.histc(f[..., i][mask], bins, lo, hi), torch.histc(r[..., i][mask], bins, lo, hi)
        out[name] = round(float(torch.minimum(hf / hf.sum(), hr / hr.sum()).sum()), 4)
    out["std_ab"] = [round(float(f[..., 1][mask].std()), 2), round(float(f[..., 2][mask].std()), 2)]
    out["std_ab_truth"] = [round(float(r[..., 1][mask].std()), 2), round(float(r[..., 2][mask].std()), 2)]
    return out


def translation_metrics(gen, data: str | None = None, split: str = "test", n: int | None = None, seed: int = 0,
                        metrics=("fid", "kid"), extractor: str | None = None, kid_subset_size: int = 1000,
                        device: str | None = None, outputs: bool = False) -> dict:
    """L1 (mean absolute error in [0, 1] pixel units) and `metrics` of the translations of `n` held-out pairs
    (all of them by default) against their targets. With `outputs`, also returns the translated images under
    "images" (with "sources" and "targets"), for pictures."""
    from ..data.sources import to_unit_range
    from .evaluate import ImageSet, evaluate, to_uint8

    if not gen.translates:
        raise GanforgeError(f"{gen.origin} is a {gen.cfg.model}; translation metrics need a translation model")
    pairs, idx = held_out_pairs(gen, data, split, n, seed)
    taken = pairs.take(idx)
    source, target = to_unit_range(taken["source"]), taken["image"]
    fake = gen.translate(source, seed=seed)
    target_f = to_unit_range(target)
    l1 = l1_error(fake, target_f)
    fake_u8 = to_uint8(fake, "outputs")
    kid = max(2, min(kid_subset_size, len(idx) // 2))
    res = evaluate(ImageSet(fake_u8, f"{gen.cfg.model} outputs ({gen.source})", pairs.name),
                   ImageSet(target, f"{pairs.name} {split} targets", pairs.name), tuple(metrics), extractor,
                   kid_subset_size=kid, device=device)
    res = {"l1": round(l1, 5), **res, "pairs": {"data": pairs.name, "split": split, "n": len(idx)}}
    if fake.shape[1] == 3:  # colour outputs: does their colour distribution match the truth's?
        res["lab_histogram_intersection"] = lab_histogram_intersection(fake, target_f)
    if outputs:
        res["images"] = {"sources": source, "outputs": fake, "targets": target_f}
    return res
