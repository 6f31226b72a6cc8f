"""GAN families, one file each with G and D side by side. Importing this package registers them."""
from . import gan, dcgan, progan  # noqa: F401
