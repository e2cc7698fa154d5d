"""RRTF section: sampling, ranking and ranking-loss settings of the alignment stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from megatron_rrtf.errors import ConfigError


@dataclass
class RRTFConfig:
    loss: Literal["rrtf", "rrhf"] = "rrtf"
    rank_weight: float = 1.0
    sft_weight: float = 1.0

    def validate(self) -> None:
        if self.rank_weight < 0 or self.sft_weight < 0:
            raise ConfigError("rrtf.rank_weight and rrtf.sft_weight must be >= 0")
