"""Objectives section: which pretraining objectives are mixed per sample, and their settings.

Each objective has its own nested section (`objectives.span`, `objectives.fim`,
`objectives.prefix_lm`); `objectives.rates` picks how often each one is drawn. docs/objectives.md
explains every default and where it comes from (CodeGen2, T5, StarCoder/bigcode, UL2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from megatron_rrtf.errors import ConfigError
from megatron_rrtf.tokenizer.special_tokens import NUM_MASK_SENTINELS

OBJECTIVE_NAMES: tuple[str, ...] = ("causal", "span", "fim", "prefix_lm")
"""Every objective, in the order that fixes its integer id in batches (objective_id)."""


@dataclass
class SpanConfig:
    """CodeGen2 span corruption in a decoder: per document, a ratio of tokens is drawn, then spans
    of that total length are moved behind `<sep>`."""

    noise_density_min: float = 0.05
    """Lower bound of the per-document masked-token ratio (drawn uniformly, CodeGen2's
    'dynamic ratio'). Set min == max for a fixed ratio (T5: 0.15)."""
    noise_density_max: float = 0.25
    """Upper bound of the per-document masked-token ratio."""
    mean_span_length: float = 3.0
    """Spans per document = round(masked tokens / mean_span_length) (T5: 3); the masked tokens are
    then cut into that many spans uniformly at random (T5's random segmentation)."""
    max_spans: int = 16
    """At most this many spans per document; needs as many <mask_i> sentinels in the tokenizer."""
    loss_on_context: bool = False
    """Also train on the corrupted context (never on sentinel, <sep> or pad labels)."""

    def validate(self) -> None:
        lo, hi = self.noise_density_min, self.noise_density_max
        if not 0.0 < lo < 1.0:
            raise ConfigError(f"objectives.span.noise_density_min={lo} must be in (0, 1)")
        if not 0.0 < hi < 1.0:
            raise ConfigError(f"objectives.span.noise_density_max={hi} must be in (0, 1)")
        if lo > hi:
            raise ConfigError(f"objectives.span.noise_density_min={lo} must be <= "
                              f"objectives.span.noise_density_max={hi}")
        if self.mean_span_length < 1.0:
            raise ConfigError(
                f"objectives.span.mean_span_length={self.mean_span_length} must be >= 1")
        if not 1 <= self.max_spans <= NUM_MASK_SENTINELS:
            raise ConfigError(f"objectives.span.max_spans={self.max_spans} must be in [1, "
                              f"{NUM_MASK_SENTINELS}] (one <mask_i> sentinel per span)")


@dataclass
class FimConfig:
    """Fill-in-the-middle (bigcode/StarCoder), applied per document inside a packed sample."""

    fim_rate: float = 0.5
    """Probability that a document is turned into FIM (StarCoder: 0.5)."""
    fim_spm_rate: float = 0.5
    """Probability that a FIM document uses SPM rather than PSM (StarCoder: 0.5)."""

    def validate(self) -> None:
        for name in ("fim_rate", "fim_spm_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"objectives.fim.{name}={value} must be in [0, 1]")


@dataclass
class PrefixLMConfig:
    """Prefix-LM: a split point p per document (data.document_attention=separate) or per sample
    (packed), drawn uniformly as a fraction of the document's (sample's) length L."""

    min_prefix_fraction: float = 0.1
    """Smallest prefix, as a fraction of L (p is at least 1 token)."""
    max_prefix_fraction: float = 0.9
    """Largest prefix, as a fraction of L (p is at most L)."""

    def validate(self) -> None:
        lo, hi = self.min_prefix_fraction, self.max_prefix_fraction
        if not 0.0 <= lo <= 1.0:
            raise ConfigError(f"objectives.prefix_lm.min_prefix_fraction={lo} must be in [0, 1]")
        if not 0.0 <= hi <= 1.0:
            raise ConfigError(f"objectives.prefix_lm.max_prefix_fraction={hi} must be in [0, 1]")
        if lo > hi:
            raise ConfigError(f"objectives.prefix_lm.min_prefix_fraction={lo} must be <= "
                              f"objectives.prefix_lm.max_prefix_fraction={hi}")


@dataclass
class ObjectivesConfig:
    rates: dict[str, float] = field(default_factory=lambda: {"causal": 1.0})
    """Relative weight of each objective per sample: causal, span, fim, prefix_lm (normalised;
    a missing name has weight 0)."""
    span: SpanConfig = field(default_factory=SpanConfig)
    fim: FimConfig = field(default_factory=FimConfig)
    prefix_lm: PrefixLMConfig = field(default_factory=PrefixLMConfig)

    def validate(self) -> None:
        for name, rate in self.rates.items():
            if name not in OBJECTIVE_NAMES:
                raise ConfigError(f"objectives.rates.{name} is not an objective; valid: "
                                  f"{', '.join(sorted(OBJECTIVE_NAMES))}")
            if not rate >= 0:  # also refuses NaN
                raise ConfigError(f"objectives.rates.{name}={rate} must be >= 0")
        if sum(self.rates.values()) <= 0:
            raise ConfigError("objectives.rates must give at least one objective a rate > 0")
        self.span.validate()
        self.fim.validate()
        self.prefix_lm.validate()

    def probabilities(self) -> tuple[float, ...]:
        """Normalised rates in OBJECTIVE_NAMES order."""
        weights = [float(self.rates.get(name, 0.0)) for name in OBJECTIVE_NAMES]
        total = sum(weights)
        return tuple(w / total for w in weights)
