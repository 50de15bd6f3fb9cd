"""The torch-free base of glm-align: what every layer may import, at a cost of milliseconds.

- :mod:`common.config`: config dataclasses loaded from YAML with ``key=value`` overrides.
- :mod:`common.jsonl`: JSONL reading (with file/line in errors) and atomic writing.
- :mod:`common.rankings`: rankings of K responses <-> ordered preference pairs (the annotation app's
  export and the reward model read the same code).

Nothing here imports torch, transformers, datasets or any other package of this project.
"""
