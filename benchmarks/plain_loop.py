"""The plain PyTorch loops ganforge is measured against: they live in the package (ganforge.bench.plain_loop)."""
from ganforge.bench.plain_loop import *  # noqa: F401,F403
from ganforge.bench.plain_loop import PlainLoop, PlainPix2Pix, PlainProGAN, PlainSAGAN, PlainStyleGAN2  # noqa: F401
