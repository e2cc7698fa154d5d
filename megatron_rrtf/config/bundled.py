"""The configs this project ships (`configs/` at the root of the checkout), found by path from the
package itself, so demos run from any working directory."""

from __future__ import annotations

from pathlib import Path

from megatron_rrtf.errors import ConfigError

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"


def bundled_config(name: str) -> Path:
    """configs/<name> of this checkout, e.g. bundled_config("tiny.yaml")."""
    path = CONFIGS_DIR / name
    if not path.is_file():
        raise ConfigError(f"{path} is missing: the demos use the configs that ship with the "
                          "project's checkout (configs/); install it from a checkout with "
                          "`pip install -e .`")
    return path
