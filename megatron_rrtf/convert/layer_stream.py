"""A checkpoint's weights, read one transformer layer at a time, as TP=1/PP=1 state dicts.

The model is built on the meta device (no memory, any size) only to get megatron's sharded
state dict: the checkpoint key, global shape and offset of every tensor. Grouped by what they
belong to (the embeddings, layer 0, ..., layer L-1, the final norm and output layer), each
group's tensors are allocated on the CPU and filled by a PyTorch DCP load of just those chunks
(offset and size in the stacked [L, ...] checkpoint tensors), whatever TP/PP layout the
checkpoint was saved with. So at most one group's weights (the largest: a layer, or the
embedding table) sit in memory at once.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import torch

from megatron_rrtf.checkpoint.model_io import MODEL_SUBDIR
from megatron_rrtf.config import RunConfig
from megatron_rrtf.errors import CheckpointError

_LAYER = re.compile(r"decoder\.layers\.(\d+)\.")
HEAD, TAIL = "head", "tail"
"""Groups before and after the layers: embeddings; final norm and output layer."""
TAIL_KEYS = ("decoder.final_layernorm.", "output_layer.")


def group_of(name: str) -> str | int:
    """The group a TP=1/PP=1 state-dict name belongs to: HEAD, a layer number, or TAIL."""
    m = _LAYER.match(name)
    if m:
        return int(m.group(1))
    return TAIL if name.startswith(TAIL_KEYS) else HEAD


def _sharded_weights(config: RunConfig, padded_vocab: int) -> dict:
    """name -> megatron ShardedTensor or ShardedTensorFactory (meta data) of the TP=1/PP=1
    model; a factory (SwiGLU's fc1, saved as two halves) is read piece by piece and merged."""
    from megatron.core.dist_checkpointing.mapping import ShardedTensor, ShardedTensorFactory

    from megatron_rrtf.model.build import build_gpt_model

    model = build_gpt_model(config, padded_vocab, on_meta=True)
    return {name: sh for name, sh in model.sharded_state_dict().items()
            if isinstance(sh, (ShardedTensor, ShardedTensorFactory))}


def _pieces(sh) -> list:
    """The ShardedTensors that hold one weight: itself, or what its factory builds."""
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    if isinstance(sh, ShardedTensor):
        return [sh]
    built = sh.build()
    pieces = list(built.values()) if isinstance(built, dict) else list(built)
    if not all(isinstance(p, ShardedTensor) for p in pieces):
        raise CheckpointError(f"{sh.key}: nested sharded factories are not supported by export")
    return pieces


def _slice_planner(chunks: dict):
    """A DCP load planner that reads, for each buffer name, only the given chunk (offsets,
    sizes) of a stored global tensor: chunks = {buffer: (checkpoint key, chunk)}."""
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
    from torch.distributed.checkpoint.planner import LoadPlan
    from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list

    class SliceLoadPlanner(DefaultLoadPlanner):
        def create_local_plan(self) -> LoadPlan:
            items = []
            for buffer, (key, chunk) in chunks.items():
                stored = self.metadata.state_dict_metadata.get(key)
                if stored is None:
                    raise CheckpointError(f"the checkpoint has no tensor {key!r}: it was saved "
                                          "by a model of another shape (model.* in config.yaml)")
                items += [dataclasses.replace(item, dest_index=dataclasses.replace(
                    item.dest_index, fqn=buffer))
                    for item in create_read_items_for_chunk_list(key, stored, [chunk])]
            return LoadPlan(items)

        def lookup_tensor(self, index) -> torch.Tensor:
            return self.state_dict[index.fqn]     # a buffer holds exactly its chunk

    return SliceLoadPlanner()


def stream_megatron_groups(config: RunConfig, step_dir: Path, padded_vocab: int,
                           ) -> Iterator[tuple[str | int, dict[str, torch.Tensor]]]:
    """Yield (group, {TP=1/PP=1 name: CPU tensor}) for HEAD, layers 0..L-1, TAIL in that order.

    Must run inside `process_groups(ParallelConfig(), ...)` (a world of one, TP = PP = 1)."""
    import torch.distributed.checkpoint as dcp
    from megatron.core.dist_checkpointing.mapping import ShardedTensorFactory
    from torch.distributed.checkpoint.metadata import ChunkStorageMetadata

    src = Path(step_dir) / MODEL_SUBDIR
    if not (src / "metadata.json").is_file():
        raise CheckpointError(f"{src} is not a complete model checkpoint (no metadata.json); "
                              "point at a step directory written by mrrtf, e.g. RUN/checkpoints/"
                              "step_00000100")
    groups: dict[str | int, dict] = {}
    for name, sh in _sharded_weights(config, padded_vocab).items():
        groups.setdefault(group_of(name), {})[name] = sh
    for group in [HEAD, *range(config.model.num_layers), TAIL]:
        wanted = groups.get(group, {})
        if not wanted:
            continue
        # megatron's dist_checkpointing.load cannot read part of a stacked [L, ...] tensor in a
        # world of one (it takes every fragment of a key as local), so read DCP chunks directly
        buffers, chunks, pieces = {}, {}, {}
        for name, sh in wanted.items():
            pieces[name] = _pieces(sh)
            for j, piece in enumerate(pieces[name]):
                shape = (1,) * piece.prepend_axis_num + tuple(piece.local_shape)  # [1, ...]
                buffers[f"{name}#{j}"] = torch.empty(shape, dtype=piece.dtype)
                chunks[f"{name}#{j}"] = (piece.key, ChunkStorageMetadata(
                    offsets=torch.Size(piece.global_offset), sizes=torch.Size(shape)))
        dcp.load(buffers, storage_reader=dcp.FileSystemReader(str(src)),
                 planner=_slice_planner(chunks))
        out = {}
        for name, sh in wanted.items():
            parts = [buffers[f"{name}#{j}"].view(p.local_shape)
                     for j, p in enumerate(pieces[name])]
            out[name] = sh.merge_fn(parts) if isinstance(sh, ShardedTensorFactory) else parts[0]
        yield group, out
        del buffers, out, parts   # the caller has converted this group: free it before the next
