"""cqia-registry: the DVC-versioned data registry behind COIG-CQIA.

    import cqia
    for record in cqia.load(rev="v0.1", category="zhihu"): ...
"""

__version__ = "0.1.0"
__all__ = ["load", "__version__"]


def __getattr__(name):
    # Lazy, so that the pipeline stages (which import cqia.*) do not load the API.
    if name == "load":
        from cqia.registry.api import load

        return load
    raise AttributeError(f"module 'cqia' has no attribute {name!r}")
