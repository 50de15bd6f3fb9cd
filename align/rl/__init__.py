"""PPO/RLHF components, each a small module with one job (experience making apart from the update).

- :mod:`.masked`: sums, means and variances over the valid tokens of padded ``(B, T)`` tensors.
- :mod:`.advantages`: GAE and returns, masked whitening, GRPO and RLOO group baselines.
- :mod:`.kl`: per-token KL estimators (k1, k2, k3) and the fixed/adaptive KL coefficient.
- :mod:`.rewards`: per-token rewards (KL penalty + sequence score + truncation penalty) and a
  running reward normaliser.
- :mod:`.losses`: clipped policy and value losses, entropy, explained variance.
- :mod:`.logprobs`: log-probs of response tokens under a causal LM, as sampling saw them.
- :mod:`.rollout`: ``HFRollout`` (``model.generate``), the ``Rollout`` batch it returns, the causal
  and prefix (GLM-1) layouts, ``chat_prompt_ids``.
- :mod:`.vllm_engine`: ``VLLMRollout``, the vLLM path (vLLM imported lazily).
- :mod:`.value_model`: the critic: a backbone with a scalar head (``ValueModel``), or a head on the
  policy's own trunk (``PolicyWithValueHead``, the shared critic).
- :mod:`.experience`: rollout + scores -> ``Experience`` (old/ref log-probs, KL, rewards, advantages).
- :mod:`.update`: ``ppo_update``, PPO epochs on ``glm_base.trainkit``'s step (+ entropy, + PPO-ptx).

docs/ppo.md describes them together.

Shapes: every per-token tensor is ``(B, T)`` over the *response* tokens (the tokens after the prompt),
with ``mask`` (``response_mask``) 1 on the valid tokens: those up to and including the first end
token. Padding after it is 0.
"""
