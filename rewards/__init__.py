"""Rewards for alignment: rule rewards (:mod:`rewards.rules`), reward-model training
(:mod:`rewards.train`, data in :mod:`rewards.data`, loss in :mod:`rewards.loss`) and comparison of
reward checkpoints and rules (:mod:`rewards.compare`). See docs/rewards.md and docs/rules.md."""
