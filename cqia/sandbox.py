"""An environment for running the real `dvc` and `git` in a throw-away repository.

Used by the tests and the benchmarks: no analytics, and DVC's site cache,
DVC's and git's global and system configuration kept inside `tmp`, so that
nothing reads or writes the user's own configuration.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def isolated_env(tmp: Path, who: str, **extra: str) -> dict[str, str]:
    """os.environ plus the isolation settings, a git identity `cqia <who>`, this venv first on PATH, and `extra`."""
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ)
    env.update(
        DVC_NO_ANALYTICS="1",
        GX_ANALYTICS_ENABLED="False",
        DVC_SITE_CACHE_DIR=str(tmp / "dvc-site-cache"),
        DVC_GLOBAL_CONFIG_DIR=str(tmp / "dvc-global"),
        DVC_SYSTEM_CONFIG_DIR=str(tmp / "dvc-system"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=str(tmp / "gitconfig"),
        GIT_AUTHOR_NAME=f"cqia {who}", GIT_AUTHOR_EMAIL=f"{who}@example.invalid",
        GIT_COMMITTER_NAME=f"cqia {who}", GIT_COMMITTER_EMAIL=f"{who}@example.invalid",
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    env.update(extra)
    return env
