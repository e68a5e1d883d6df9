"""CLI command modules. Each module defines `register(cli)`, which adds its commands
to the `cqia` group; cqia/cli.py loads every module here in name order.

`registry_root` is how every command finds the registry it works on."""

from __future__ import annotations

from pathlib import Path

from cqia.errors import CqiaError


def registry_root(repo_option: bool = False) -> Path:
    """The registry the working directory is in, found the way git finds its top level.

    The nearest directory, from the working directory up, that holds `dvc.yaml` and
    `.dvc/`; the search stops at a directory that holds `.git` and is not a registry
    (another repository). The result is relative to the working directory (`.` at the
    top, `..` from data/), so a path joined to it names the file as the user sees it.
    `repo_option`: the command has --repo, which the error then offers.
    """
    cwd = Path.cwd()
    for up, directory in enumerate([cwd, *cwd.parents]):
        if (directory / "dvc.yaml").is_file() and (directory / ".dvc").is_dir():
            return Path(*[".."] * up)
        if (directory / ".git").exists():
            break
    raise CqiaError("not inside a cqia registry (no dvc.yaml and .dvc/ here or above)", where=str(cwd),
                    fix="cd into the registry's clone" + (", or pass --repo PATH" if repo_option else ""))
