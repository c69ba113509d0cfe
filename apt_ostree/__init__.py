"""apt-ostree: image-based, atomic Debian systems built on OSTree."""

__version__ = "0.1.0"
