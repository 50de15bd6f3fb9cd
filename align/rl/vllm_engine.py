"""Rollouts with vLLM: a colocated engine in the trainer's process, or a ``trl vllm-serve`` server.

vLLM is imported only when an engine is built (:meth:`VLLMRollout.colocated`), so this module imports
on a machine without vLLM. The life of the engine's weights, as TRL's ``VLLMGeneration`` does it:

1. The engine loads the exported checkpoint from disk once, at start.
2. After every policy update the trainer calls :meth:`VLLMRollout.push_weights`: each parameter of
   the policy goes to the engine's model through ``load_weights([(name, tensor)])`` (reached with
   ``LLM.apply_model``), then ``reset_prefix_cache()`` so no KV block computed with the old weights
   is reused.
3. Sleep mode (``enable_sleep_mode=True``): after each generation the engine sleeps at level 2
   (weights and KV cache freed). Before the next generation the weights are woken
   (``wake_up(tags=["weights"])``) and *pushed from the policy*, then the KV cache is woken. The
   engine's ``reload_weights`` is never called: it reloads the checkpoint from disk, and rollouts
   would silently come from the initial model (TRL issue 5312).

Names: the GLM-4 variant's parameters already carry transformers' ``GlmForCausalLM`` names, which
is what vLLM's ``GlmForCausalLM`` loads from the exported checkpoint (:mod:`glm_base.export`), so
the mapping only strips wrapper prefixes (DDP ``module.``, ``torch.compile``'s ``_orig_mod.``,
activation checkpointing's ``_checkpoint_wrapped_module.``). GLM-1 has no vLLM architecture and is
refused with :class:`VLLMUnsupported`. LoRA adapters must be merged before pushing.

The log-probs vLLM returns (``logprobs_mode="processed_logprobs"``: after temperature, and after
top-p/top-k when those are on) are kept in :attr:`Rollout.logprobs` for monitoring; PPO's old
log-probs are always recomputed with the trainer's own forward (:mod:`align.rl.logprobs`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from .rollout import Rollout, SamplingSettings, left_pad, response_mask_and_truncation

logger = logging.getLogger(__name__)

_LEADING_WRAPPERS = ("module.", "_orig_mod.")  # DDP, torch.compile
_INNER_WRAPPERS = ("_checkpoint_wrapped_module.", "_fsdp_wrapped_module.", "_orig_mod.")


class VLLMUnsupported(ValueError):
    """This model or checkpoint cannot be served by vLLM; the message says why and what would work."""


GLM1_MESSAGE = (
    "vLLM has no GLM-1 architecture (learned 2D position tables); roll out GLM-1 policies with "
    "align.rl.rollout.HFRollout, or train a glm4-variant policy to use vLLM"
)


def check_servable(config) -> None:
    """Raise :class:`VLLMUnsupported` for a GLM-1 config (a ``GLMConfig`` or a config.json dict)."""
    architecture = config.get("architecture") if isinstance(config, dict) else getattr(config, "architecture", None)
    if architecture == "glm1":
        raise VLLMUnsupported(GLM1_MESSAGE)


def check_checkpoint_dir(path: str | Path) -> None:
    """Raise :class:`VLLMUnsupported` unless ``path`` holds a checkpoint vLLM can load: a GLM-1
    checkpoint is refused, and a glm_base GLM-4 checkpoint must be exported first."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        return  # a hub name or a layout vLLM resolves itself
    config = json.loads(config_file.read_text())
    check_servable(config)
    if config.get("model_type") == "glm_base":
        raise VLLMUnsupported(
            f"{path} is a glm_base checkpoint; vLLM loads transformers' GlmForCausalLM. Export it first: "
            f"python -m glm_base.export --checkpoint {path} --out {path}-hf"
        )


def vllm_weight_name(name: str) -> str:
    """The name vLLM's ``load_weights`` expects for one of our parameters: ours with wrapper prefixes
    removed (the GLM-4 variant's names are ``GlmForCausalLM``'s). Raises :class:`VLLMUnsupported`
    for an unmerged LoRA parameter."""
    if "lora_" in name:
        raise VLLMUnsupported(f"parameter {name!r} is a LoRA adapter weight; merge the adapter before pushing to vLLM")
    while name.startswith(_LEADING_WRAPPERS):
        name = name.split(".", 1)[1]
    for inner in _INNER_WRAPPERS:
        name = name.replace(inner, "")
    return name


def named_weights_for_vllm(model) -> Iterator[tuple[str, torch.Tensor]]:
    """``(vLLM name, tensor)`` for every parameter of ``model`` (tied weights once, as saved).
    Raises :class:`VLLMUnsupported` for a GLM-1 model."""
    check_servable(getattr(model, "config", None))
    for name, param in model.named_parameters():
        yield vllm_weight_name(name), param.detach()


class VLLMRollout(SamplingSettings):
    """Generate rollouts with a vLLM engine whose weights follow the training policy.

    ``engine`` is a ``vllm.LLM`` (or anything with its ``generate``, ``apply_model``,
    ``reset_prefix_cache``, ``sleep`` and ``wake_up``); ``policy`` is the training model whose weights
    :meth:`push_weights` copies (pass the unwrapped model; gather ZeRO-3/FSDP shards before pushing).
    Sampling arguments mean what they mean in :class:`align.rl.rollout.HFRollout`, and
    :meth:`generate` returns the same :class:`~align.rl.rollout.Rollout`.
    """

    def __init__(self, engine, policy, eos_token_ids: Sequence[int], pad_token_id: int, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, return_logprobs: bool = True,
                 sleep_mode: bool = False, sleep_level: int = 2, weights_on_engine: bool = True,
                 bucket_bytes: int = 256 * 2**20, sampling_params_cls=None):
        check_servable(getattr(policy, "config", None))
        self._set_sampling(eos_token_ids, pad_token_id, max_new_tokens, temperature, top_p, top_k, return_logprobs)
        if sleep_level not in (1, 2):
            raise ValueError(f"vLLM sleep level is 1 or 2, got {sleep_level}")
        self.engine = engine
        self.policy = policy
        self.sleep_mode = sleep_mode
        self.sleep_level = sleep_level
        self.bucket_bytes = bucket_bytes
        self._sampling_params_cls = sampling_params_cls
        self.weights_on_engine = weights_on_engine  # False after a level-2 sleep dropped them
        self.weights_asleep = False
        self.kv_cache_asleep = False
        self.pushes = 0

    # --- building ------------------------------------------------------------------------------

    @classmethod
    def colocated(cls, policy, model_path: str | Path, *, eos_token_ids: Sequence[int], pad_token_id: int,
                  max_new_tokens: int, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.3,
                  max_model_len: int | None = None, enable_sleep_mode: bool = False, seed: int = 0,
                  dtype: str = "auto", llm_kwargs: dict | None = None, **rollout_kwargs) -> "VLLMRollout":
        """Start a ``vllm.LLM`` inside this process (``distributed_executor_backend="external_launcher"``:
        each training process holds its own engine) on the *exported* checkpoint at ``model_path``.

        Sets ``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` from torch.distributed (or 0/0/1) and a
        ``MASTER_ADDR``/``MASTER_PORT`` if missing, as the external launcher needs. With
        ``enable_sleep_mode`` the engine goes to sleep at once (level 2) and the first generation
        pushes the policy's weights. Raises :class:`VLLMUnsupported` (GLM-1, unexported checkpoint)
        and ``ImportError`` when vLLM is not installed.
        """
        check_servable(getattr(policy, "config", None))
        check_checkpoint_dir(model_path)
        try:
            import vllm
        except ImportError as err:
            raise ImportError("the vLLM rollout needs vLLM (pip install 'glm-align[vllm]', a CUDA machine); "
                              "use align.rl.rollout.HFRollout without it") from err
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            rank, world = 0, 1
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("LOCAL_RANK", os.environ.get("LOCAL_RANK", str(rank)))
        os.environ.setdefault("WORLD_SIZE", str(world))
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29533")
        kwargs = dict(model=str(model_path), distributed_executor_backend="external_launcher",
                      tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
                      max_model_len=max_model_len, enable_sleep_mode=enable_sleep_mode,
                      seed=seed + rank // tensor_parallel_size, dtype=dtype, logprobs_mode="processed_logprobs")
        kwargs.update(llm_kwargs or {})
        engine = vllm.LLM(**kwargs)
        rollout = cls(engine, policy, eos_token_ids, pad_token_id, max_new_tokens, sleep_mode=enable_sleep_mode,
                      sampling_params_cls=vllm.SamplingParams, **rollout_kwargs)
        if enable_sleep_mode:
            rollout._sleep()
        return rollout

    @classmethod
    def from_server(cls, policy, client, *, eos_token_ids: Sequence[int], pad_token_id: int, max_new_tokens: int,
                    **rollout_kwargs) -> "VLLMRollout":
        """Roll out on a ``trl vllm-serve`` server through TRL's ``VLLMClient`` (its
        ``init_communicator()`` already called); weights go through the client's NCCL weight
        update. vLLM need not be installed in the trainer's environment."""
        return cls(ServerEngine(client), policy, eos_token_ids, pad_token_id, max_new_tokens,
                   sampling_params_cls=dict, **rollout_kwargs)

    # --- weights -------------------------------------------------------------------------------

    def _buckets(self) -> Iterator[list[tuple[str, torch.Tensor]]]:
        bucket, size = [], 0
        for name, tensor in named_weights_for_vllm(self.policy):
            bucket.append((name, tensor))
            size += tensor.numel() * tensor.element_size()
            if size >= self.bucket_bytes:
                yield bucket
                bucket, size = [], 0
        if bucket:
            yield bucket

    def push_weights(self) -> None:
        """Copy every policy parameter into the engine (waking its weights first in sleep mode),
        then reset the prefix cache. Call after every policy update."""
        if self.weights_asleep:
            self.engine.wake_up(tags=["weights"])
            self.weights_asleep = False
        tensors = size = 0
        for bucket in self._buckets():
            if isinstance(self.engine, ServerEngine):
                self.engine.load_named(bucket)
            else:
                self.engine.apply_model(lambda model, weights=bucket: model.load_weights(weights))
            tensors += len(bucket)
            size += sum(t.numel() * t.element_size() for _, t in bucket)
        self.engine.reset_prefix_cache()
        self.weights_on_engine = True
        self.pushes += 1
        logger.debug("pushed %d tensors (%.1f MB) to vLLM (push %d)", tensors, size / 2**20, self.pushes)

    def _sleep(self) -> None:
        self.engine.sleep(level=self.sleep_level)
        self.weights_asleep = self.kv_cache_asleep = True
        if self.sleep_level == 2:
            self.weights_on_engine = False

    def _wake_for_generation(self) -> None:
        if not self.weights_on_engine:
            self.push_weights()  # level 2 dropped them: push from the policy, never reload from disk
        elif self.weights_asleep:
            self.engine.wake_up(tags=["weights"])  # level 1 kept them in CPU memory
            self.weights_asleep = False
        if self.kv_cache_asleep:
            self.engine.wake_up(tags=["kv_cache"])
            self.kv_cache_asleep = False

    # --- generation ----------------------------------------------------------------------------

    def sampling_params(self):
        cls = self._sampling_params_cls
        if cls is None:
            from vllm import SamplingParams as cls
        return cls(n=1, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k if self.top_k > 0 else -1,
                   max_tokens=self.max_new_tokens, stop_token_ids=self.eos_token_ids,
                   logprobs=0 if self.return_logprobs else None, detokenize=False)

    def generate(self, prompts: Sequence[Sequence[int]]) -> Rollout:
        """One response per prompt (token ids in, :class:`Rollout` out, on the policy's device)."""
        if self.sleep_mode:
            self._wake_for_generation()
        elif not self.weights_on_engine:
            self.push_weights()
        try:
            outputs = self.engine.generate([{"prompt_token_ids": list(p)} for p in prompts],
                                           sampling_params=self.sampling_params(), use_tqdm=False)
        finally:
            if self.sleep_mode:
                self._sleep()
        if len(outputs) != len(prompts):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} prompts")
        responses, logprobs = [], []
        for i, output in enumerate(outputs):
            completion = output.outputs[0]
            tokens = list(completion.token_ids)
            if completion.finish_reason == "stop" and (not tokens or tokens[-1] not in self.eos_token_ids):
                stop = completion.stop_reason
                if not (isinstance(stop, int) and stop in self.eos_token_ids):
                    raise RuntimeError(
                        f"vLLM ended response {i} with finish_reason 'stop' on {stop!r} (last token {tokens[-1:]}), "
                        f"which is not one of eos_token_ids {self.eos_token_ids}; list every token the engine "
                        f"stops on (the exported config's eos_token_id too) in eos_token_ids")
                tokens.append(stop)  # the end token was left out of token_ids: put it back for the mask
            responses.append(tokens)
            if self.return_logprobs:
                logprobs.append(_sampled_logprobs(completion, tokens))
        return self._to_rollout(prompts, responses, logprobs if self.return_logprobs else None)

    def _to_rollout(self, prompts, responses, logprobs) -> Rollout:
        device = next(self.policy.parameters()).device
        prompt_ids, prompt_mask = left_pad(prompts, self.pad_token_id)
        width = max(1, max(len(r) for r in responses))
        response_ids = torch.full((len(responses), width), self.pad_token_id, dtype=torch.long)
        lp = torch.zeros((len(responses), width), dtype=torch.float32)
        for i, tokens in enumerate(responses):
            response_ids[i, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            if logprobs is not None:
                lp[i, :len(tokens)] = torch.tensor(logprobs[i], dtype=torch.float32)
        response_mask, truncated = response_mask_and_truncation(response_ids, self.eos_token_ids)
        lengths = torch.tensor([len(r) for r in responses])
        response_mask = response_mask * (torch.arange(width)[None, :] < lengths[:, None]).long()
        if not all(len(r) for r in responses):
            empty = [i for i, r in enumerate(responses) if not r]
            raise RuntimeError(f"vLLM returned empty responses for prompts {empty}")
        response_ids = torch.where(response_mask.bool(), response_ids, torch.full_like(response_ids, self.pad_token_id))
        rollout = Rollout(prompt_ids, prompt_mask, response_ids, response_mask, truncated,
                          torch.where(response_mask.bool(), lp, 0.0) if logprobs is not None else None)
        return rollout.to(device)


def _sampled_logprobs(completion, tokens: list[int]) -> list[float]:
    """The log-prob of each sampled token from a ``CompletionOutput``'s per-token dicts
    (``{token_id: Logprob}``); NaN where vLLM gave none (an end token restored to ``token_ids``), so
    an unknown value is never mistaken for a probability of 1."""
    values = []
    entries = completion.logprobs or []
    for i, token in enumerate(tokens):
        entry = entries[i].get(token) if i < len(entries) and entries[i] is not None else None
        values.append(math.nan if entry is None else float(entry.logprob))
    return values


class ServerEngine:
    """Adapter giving a ``trl vllm-serve`` server (through ``trl.generation.vllm_client.VLLMClient``)
    the engine interface :class:`VLLMRollout` uses: ``generate``, ``apply_model``-free weight
    pushes, ``reset_prefix_cache``. Sleep mode does not apply to a server.

    Use it as ``VLLMRollout(ServerEngine(client), policy, ...)``; ``client.init_communicator()``
    must have been called on the main process.
    """

    def __init__(self, client):
        self.client = client

    def generate(self, prompts: list[dict], sampling_params, use_tqdm: bool = False) -> list[Any]:
        params = sampling_params if isinstance(sampling_params, dict) else vars(sampling_params)
        result = self.client.generate(
            prompts=[p["prompt_token_ids"] for p in prompts], n=1, temperature=params["temperature"],
            top_p=params["top_p"], top_k=max(params["top_k"], 0), max_tokens=params["max_tokens"],
            logprobs=params.get("logprobs"), generation_kwargs={"stop_token_ids": params["stop_token_ids"]},
        )
        outputs = []
        for i, tokens in enumerate(result["completion_ids"]):
            lps = result.get("logprobs")
            per_token = None
            if lps is not None:
                per_token = [{t: _Logprob(row[0] if row[0] is not None else math.nan)} for t, row in zip(tokens, lps[i])]
            stopped = bool(tokens) and tokens[-1] in params["stop_token_ids"]
            completion = _Completion(tokens, per_token, "stop" if stopped else "length")
            outputs.append(_Request(result["prompt_ids"][i], [completion]))
        return outputs

    def load_named(self, weights: list[tuple[str, torch.Tensor]]) -> None:
        metadata = [(n, str(t.dtype).removeprefix("torch."), list(t.shape)) for n, t in weights]
        self.client.update_named_params(metadata, iter(weights))

    def apply_model(self, func):
        raise NotImplementedError("a server engine takes weights through load_named")

    def reset_prefix_cache(self) -> None:
        self.client.reset_prefix_cache()

    def sleep(self, level: int = 1) -> None:
        raise VLLMUnsupported("sleep mode applies to a colocated engine, not a vLLM server")

    wake_up = sleep


class _Logprob:
    def __init__(self, logprob: float):
        self.logprob = logprob


class _Completion:
    def __init__(self, token_ids, logprobs, finish_reason):
        self.token_ids, self.logprobs, self.finish_reason, self.stop_reason = token_ids, logprobs, finish_reason, None


class _Request:
    def __init__(self, prompt_token_ids, outputs):
        self.prompt_token_ids, self.outputs = prompt_token_ids, outputs
