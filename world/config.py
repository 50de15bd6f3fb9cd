"""Configuration of the synthetic world: sizes, split fractions and flaw rates."""

from __future__ import annotations

from dataclasses import dataclass, field

# Bumped whenever the same size and seed would build different files, so that a world cached by
# world.default (data/world/<size>-seed<seed>) is rebuilt. 1.1: 3,000 tiny preference rows, split by prompt.
# 1.2: a wrong-fact reply is the good reply with only the value changed. 1.3: corpus documents have a title.
WORLD_VERSION = "1.3"

# Counts per size. ``entities`` drives the corpus; the other files are counted in rows (train+eval).
SIZES: dict[str, dict[str, int]] = {
    "tiny": {
        "people": 120, "cities": 40, "companies": 40, "products": 70, "chemicals": 40,
        "sft": 800, "preferences": 3000, "safety": 240, "long": 40, "cloze": 400,
    },
    "small": {
        "people": 900, "cities": 240, "companies": 300, "products": 500, "chemicals": 260,
        "sft": 6000, "preferences": 4000, "safety": 1200, "long": 200, "cloze": 2000,
    },
    "medium": {
        "people": 4000, "cities": 1000, "companies": 1200, "products": 2000, "chemicals": 1000,
        "sft": 30000, "preferences": 20000, "safety": 5000, "long": 1000, "cloze": 10000,
    },
}


@dataclass
class FlawRates:
    """Share of SFT *train* rows that carry each flaw (eval rows are clean references)."""

    mixed: float = field(default=0.08, metadata={"help": "answers with words of the other language mixed in"})
    needless_refusal: float = field(default=0.05, metadata={"help": "refusals of harmless requests"})
    padding: float = field(default=0.10, metadata={"help": "answers padded with filler for length's sake"})

    def __post_init__(self) -> None:
        for name in ("mixed", "needless_refusal", "padding"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"flaws.{name} must be in [0, 1], got {value}")
        if self.mixed + self.needless_refusal + self.padding > 1.0:
            raise ValueError("flaw rates must sum to at most 1 (a row carries at most one flaw)")


@dataclass
class WorldConfig:
    """Build the synthetic bilingual world: python -m world.build --out DIR --size tiny --seed 0"""

    out: str = field(default="data/world", metadata={"help": "output directory"})
    size: str = field(default="tiny", metadata={"help": "tiny | small | medium", "choices": ["tiny", "small", "medium"]})
    seed: int = field(default=0, metadata={"help": "random seed; same seed and size give identical files"})
    eval_fraction: float = field(default=0.1, metadata={"help": "share of rows in the eval split"})
    long_min_tokens: int = field(default=1000, metadata={"help": "shortest long-context example (approx tokens)"})
    long_max_tokens: int = field(default=32000, metadata={"help": "longest long-context example (approx tokens)"})
    flaws: FlawRates = field(default_factory=FlawRates)

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {sorted(SIZES)}, got {self.size!r}")
        if not 0.0 < self.eval_fraction < 0.5:
            raise ValueError(f"eval_fraction must be in (0, 0.5), got {self.eval_fraction}")
        if not 200 <= self.long_min_tokens <= self.long_max_tokens:
            raise ValueError("need 200 <= long_min_tokens <= long_max_tokens")

    @property
    def counts(self) -> dict[str, int]:
        return SIZES[self.size]
