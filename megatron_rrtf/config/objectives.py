"""Objectives section: which pretraining objectives are mixed per sample, and their settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from megatron_rrtf.errors import ConfigError


@dataclass
class ObjectivesConfig:
    rates: dict[str, float] = field(default_factory=lambda: {"causal": 1.0})
    """Per-sample probability of each objective: causal, span, fim, prefix_lm."""

    def validate(self) -> None:
        known = {"causal", "span", "fim", "prefix_lm"}
        for name, rate in self.rates.items():
            if name not in known:
                raise ConfigError(f"objectives.rates.{name} is not an objective; valid: "
                                  f"{', '.join(sorted(known))}")
            if rate < 0:
                raise ConfigError(f"objectives.rates.{name}={rate} must be >= 0")
        if sum(self.rates.values()) <= 0:
            raise ConfigError("objectives.rates must give at least one objective a rate > 0")
