"""GAN families, one file each with G and D side by side. Importing this package registers them."""
from . import gan, dcgan, pix2pix, progan, sagan, stylegan, stylegan2  # noqa: F401
