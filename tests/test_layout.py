"""The dependency rule: the library (megatron_rrtf) <- the stages (pretrain, align) <- the CLI
(mrrtf). The library must import and work without the stages and the CLI; the stages must not
depend on each other or on the CLI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIBRARY, STAGES, CLI = "megatron_rrtf", ("pretrain", "align"), "mrrtf"

IMPORT_EVERY_LIBRARY_MODULE = r"""
import importlib, pkgutil, sys

BLOCKED = {"pretrain", "align", "mrrtf"}


class Unimportable:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"the library imported {name}, which it must not depend on")
        return None


sys.meta_path.insert(0, Unimportable())
import megatron_rrtf

names = [m.name for m in pkgutil.walk_packages(megatron_rrtf.__path__, "megatron_rrtf.")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def _imported_tops(path: Path) -> set[str]:
    """Top-level package of every import in the file, function-level (lazy) imports included."""
    tops = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            tops |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return tops


def test_every_library_module_imports_with_the_stages_and_cli_unimportable():
    done = subprocess.run([sys.executable, "-c", IMPORT_EVERY_LIBRARY_MODULE], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) == len(_modules(LIBRARY)) - 1  # all but the top __init__


@pytest.mark.parametrize("package, forbidden", [
    (LIBRARY, {*STAGES, CLI}),
    ("pretrain", {"align", CLI}),
    ("align", {"pretrain", CLI}),
])
def test_no_module_imports_against_the_dependency_rule(package, forbidden):
    """Also the imports inside functions, which importing the module does not run."""
    offenders = {str(p.relative_to(REPO)): sorted(_imported_tops(p) & forbidden)
                 for p in _modules(package) if _imported_tops(p) & forbidden}
    assert offenders == {}


def test_no_library_module_looks_like_a_test():
    """Test collectors (pytest's test_*.py / *_test.py) must never pick up library code."""
    named = [str(p.relative_to(REPO)) for p in _modules(LIBRARY)
             if p.name.startswith("test_") or p.stem.endswith("_test")]
    assert named == []


IMPORT_SANDBOX_TOUCHES_NOTHING = r"""
import os, os.path, sysconfig, threading  # stdlib first: sysconfig resolves its own paths
calls = []
for mod, name in ((os, "listdir"), (os, "scandir"), (os.path, "isdir"), (os.path, "realpath"),
                  (os, "fork"), (os, "pipe")):
    real = getattr(mod, name)
    def spy(*a, _real=real, _name=name, **k):
        calls.append(_name)
        return _real(*a, **k)
    setattr(mod, name, spy)
import megatron_rrtf.sandbox
print(sorted(set(calls)), threading.active_count())
"""


def test_importing_the_sandbox_scans_nothing_and_starts_nothing():
    done = subprocess.run([sys.executable, "-c", IMPORT_SANDBOX_TOUCHES_NOTHING], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["[]", "1"]


def test_demo_configs_are_found_from_any_working_directory(tmp_path, monkeypatch):
    from align.demo import DEMO_CONFIG
    from megatron_rrtf.config import load_config
    from megatron_rrtf.config.bundled import bundled_config
    from mrrtf.commands.compare_demo import RUNS
    from mrrtf.commands.demo import DATA_CONFIG, MODEL_CONFIG, OBJECTIVE_CONFIG

    monkeypatch.chdir(tmp_path)
    for name in (DEMO_CONFIG, DATA_CONFIG, MODEL_CONFIG, OBJECTIVE_CONFIG, *RUNS.values()):
        load_config(bundled_config(name))


DERIVED = {"model.ffn_hidden_size": "ffn_size", "model.make_vocab_size_divisible_by":
           "padded_vocab_size"}
"""Keys read through a derived ModelConfig property or method; that name must be read outside."""


def _config_keys(cls, prefix: str = ""):
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        inner = [t for t in (hints[f.name], *typing.get_args(hints[f.name]))
                 if dataclasses.is_dataclass(t)]
        if inner:
            yield from _config_keys(inner[0], f"{prefix}{f.name}.")
        else:
            yield prefix + f.name


def test_every_config_key_is_read_outside_the_config_package():
    """A key that only the config package mentions is a dead setting (validated, documented,
    and silently ignored)."""
    import re

    from megatron_rrtf.config import RunConfig

    code = "".join(p.read_text() for package in (LIBRARY, *STAGES, CLI)
                   for p in _modules(package) if "megatron_rrtf/config/" not in p.as_posix())
    unread = [key for key in _config_keys(RunConfig)
              if not re.search(r"\." + re.escape(DERIVED.get(key, key.rsplit(".", 1)[-1]))
                               + r"\b", code)]
    assert unread == []
