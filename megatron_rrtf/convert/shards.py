"""Sharded safetensors as Hugging Face writes them: model-0000x-of-0000n.safetensors plus
model.safetensors.index.json ({"metadata": {"total_size"}, "weight_map": {key: file}}), or one
model.safetensors when everything fits in one shard.

`plan_shards` is pure: the keys in the order they are written, with shapes and dtype, cut
greedily into shards of at most `max_bytes` (a tensor larger than that gets a shard of its own,
as in transformers). `ShardWriter` takes tensors as they are converted, writes each shard as soon
as all its tensors have arrived (to a temporary name, then renamed) and drops them, so at most
one shard and one converted group are held at once.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from megatron_rrtf.errors import ConfigError, ExportError

if TYPE_CHECKING:  # torch stays out of `mrrtf export --help` (the CLI reads the default here)
    import torch

log = logging.getLogger(__name__)

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DEFAULT_MAX_SHARD_SIZE = "5GB"
"""As transformers' save_pretrained (decimal: 5 * 10**9 bytes)."""
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str | int) -> int:
    """'5GB' -> 5_000_000_000, '2GiB' -> 2 * 2**30, '1000' or 1000 -> 1000 bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B?)\s*", str(text).upper())
    if not m or m.group(2) not in _UNITS:
        raise ConfigError(f"--max-shard-size {text!r}: give bytes or a size such as 5GB, 500MB, "
                          "2GiB")
    size = int(float(m.group(1)) * _UNITS[m.group(2)])
    if size < 1:
        raise ConfigError(f"--max-shard-size {text!r} must be at least 1 byte")
    return size


def nbytes(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    """Bytes of a tensor of `shape` and `dtype`."""
    numel = 1
    for dim in shape:
        numel *= dim
    return numel * dtype.itemsize


@dataclass(frozen=True)
class ShardPlan:
    """Which file each key goes to; files[i] holds keys[i] (in write order), sizes[i] bytes."""

    files: tuple[str, ...]
    keys: tuple[tuple[str, ...], ...]
    sizes: tuple[int, ...]
    shapes: dict[str, tuple[int, ...]]
    dtype: torch.dtype

    @property
    def total_size(self) -> int:
        return sum(self.sizes)

    def index(self) -> dict:
        """The model.safetensors.index.json transformers reads."""
        return {"metadata": {"total_size": self.total_size},
                "weight_map": {k: f for f, keys in zip(self.files, self.keys) for k in keys}}


def plan_shards(tensors: list[tuple[str, tuple[int, ...]]], dtype: torch.dtype,
                max_bytes: int) -> ShardPlan:
    """Cut `tensors` (key, shape), in order, into shards of at most `max_bytes` each."""
    groups: list[list[str]] = [[]]
    sizes = [0]
    for key, shape in tensors:
        size = nbytes(shape, dtype)
        if groups[-1] and sizes[-1] + size > max_bytes:
            groups.append([])
            sizes.append(0)
        groups[-1].append(key)
        sizes[-1] += size
    n = len(groups)
    files = (SINGLE_FILE,) if n == 1 else tuple(
        f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n))
    return ShardPlan(files=files, keys=tuple(tuple(g) for g in groups), sizes=tuple(sizes),
                     shapes=dict(tensors), dtype=dtype)


class ShardWriter:
    """Writes a plan's shards into `out_dir` as their tensors arrive (see module docstring)."""

    def __init__(self, out_dir: Path, plan: ShardPlan):
        self.out_dir, self.plan = Path(out_dir), plan
        self._file_of = {k: i for i, keys in enumerate(plan.keys) for k in keys}
        self._pending: dict[int, dict[str, torch.Tensor]] = {}
        self._seen: set[str] = set()
        self._written: set[int] = set()

    def add(self, tensors: dict[str, torch.Tensor]) -> None:
        """Take converted tensors (any order); write every shard they complete."""
        for key, tensor in tensors.items():
            if key not in self._file_of:
                raise ExportError(f"converted weight {key} is not a weight of the Hugging Face "
                                  "model (its architecture has no such key)")
            if key in self._seen:
                raise ExportError(f"converted weight {key} was produced twice")
            if tuple(tensor.shape) != self.plan.shapes[key]:
                raise ExportError(f"converted weight {key} has shape {tuple(tensor.shape)}, the "
                                  f"Hugging Face model expects {self.plan.shapes[key]}")
            self._seen.add(key)
            shard = self._file_of[key]
            self._pending.setdefault(shard, {})[key] = tensor.to(self.plan.dtype).contiguous()
            if len(self._pending[shard]) == len(self.plan.keys[shard]):
                self._write(shard)

    def _write(self, shard: int) -> None:
        from safetensors.torch import save_file

        tensors = self._pending.pop(shard)
        path = self.out_dir / self.plan.files[shard]
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({k: tensors[k] for k in self.plan.keys[shard]}, str(tmp),
                  metadata={"format": "pt"})
        os.replace(tmp, path)
        self._written.add(shard)
        log.info("wrote %s (%d tensors, %.1f MB)", path.name, len(tensors),
                 self.plan.sizes[shard] / 1e6)

    def finish(self) -> None:
        """Check every key arrived; write the index (when sharded); remove weight files of an
        earlier export in out_dir that this one does not have."""
        missing = [k for keys in self.plan.keys for k in keys if k not in self._seen]
        if missing:
            raise ExportError(f"the checkpoint gave no value for {len(missing)} Hugging Face "
                              f"weight(s), e.g. {missing[:3]}")
        ours = set(self.plan.files)
        if len(self.plan.files) > 1:
            tmp = self.out_dir / f".{INDEX_FILE}.tmp"
            tmp.write_text(json.dumps(self.plan.index(), indent=1) + "\n")
            os.replace(tmp, self.out_dir / INDEX_FILE)
            ours.add(INDEX_FILE)
        for stale in self.out_dir.glob("model*.safetensors*"):
            if stale.name not in ours:
                stale.unlink()
