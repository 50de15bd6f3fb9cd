"""The synthetic bilingual (EN/ZH) world: default data with known ground truth for every stage.

Build:   ``python -m world.build --out data/world --size tiny --seed 0``
Load:    ``world.schema.load("data/world", "sft")`` -> ``datasets.DatasetDict`` (train/eval), after
         validating every row; ``world.schema.validate_file(path, kind)`` for a user's own file.
Judge:   ``world.judge.language_of``, ``mixing_rate``, ``is_mixed``, ``is_refusal``,
         ``answer_is_correct``, ``behaviour_ok``.
Kinds:   corpus, cloze, sft, preferences, safety, long (see ``world.schema`` for the fields).
"""

from world.config import WORLD_VERSION as __version__  # noqa: F401
