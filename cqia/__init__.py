"""cqia-registry: the DVC-versioned data registry behind COIG-CQIA."""

__version__ = "0.1.0"
