"""A stand-in for the parts of vLLM that ``align.rl.vllm_engine`` uses, with vLLM's names and shapes.

``LLM(model=DIR, ...)`` loads ``DIR`` from disk the way vLLM does (transformers' ``GlmForCausalLM``,
so weight names are the exported checkpoint's) and generates with it; ``generate`` returns
``RequestOutput``s holding ``CompletionOutput``s (``token_ids`` with the stop token, per-token
``{token_id: Logprob}`` dicts, ``finish_reason`` "stop"/"length"). ``apply_model`` runs a function
on the model, whose ``load_weights`` copies tensors by name and records each push; ``sleep(level=2)``
overwrites the weights with NaN (they are gone), ``wake_up`` brings memory back but not the values,
``collective_rpc("reload_weights")`` reloads from disk. Every call is logged in ``LLM.calls``.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import torch
from transformers import GlmForCausalLM


@dataclass
class SamplingParams:
    """The subset of ``vllm.SamplingParams`` fields we use; an unknown keyword is a TypeError as in vLLM."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int | None = 16
    stop_token_ids: list[int] | None = None
    logprobs: int | None = None
    detokenize: bool = True
    seed: int | None = None


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    prompt_logprobs: None
    outputs: list[CompletionOutput]
    finished: bool = True


class WorkerModel:
    """What ``apply_model`` hands its function: the engine's model with vLLM's ``load_weights``."""

    def __init__(self, model: torch.nn.Module, log: list):
        self.model = model
        self.log = log

    def load_weights(self, weights):
        params = dict(self.model.named_parameters())
        loaded = set()
        for name, tensor in weights:
            if name not in params:
                raise KeyError(f"fake vLLM model has no parameter {name!r}")
            with torch.no_grad():
                params[name].copy_(tensor)
            loaded.add(name)
        self.log.append(("load_weights", sorted(loaded)))
        return loaded


class LLM:
    """Fake ``vllm.LLM``; the last one built is ``LLM.last``."""

    last: "LLM | None" = None

    def __init__(self, model: str, **kwargs):
        self.model_path = model
        self.kwargs = kwargs
        self.calls: list = []
        self.model = GlmForCausalLM.from_pretrained(model).eval()
        self.worker = WorkerModel(self.model, self.calls)
        self.weights_awake = self.kv_awake = True
        self.enable_sleep_mode = kwargs.get("enable_sleep_mode", False)
        LLM.last = self

    def generate(self, prompts, sampling_params=None, use_tqdm=True):
        from align.rl.rollout import HFRollout

        self.calls.append(("generate", len(prompts)))
        if not (self.weights_awake and self.kv_awake):
            raise RuntimeError("fake vLLM: generate while asleep")
        params = sampling_params or SamplingParams()
        rollout = HFRollout(self.model, params.stop_token_ids or [0], pad_token_id=0, max_new_tokens=params.max_tokens,
                            temperature=params.temperature, top_p=params.top_p, top_k=max(params.top_k, 0),
                            return_logprobs=params.logprobs is not None)
        outputs = []
        for i, prompt in enumerate(prompts):
            out = rollout.generate([prompt["prompt_token_ids"]])
            tokens = out.responses()[0]
            logprobs = None
            if params.logprobs is not None:
                logprobs = [{t: Logprob(float(lp), rank=1)} for t, lp in zip(tokens, out.logprobs[0].tolist())]
            finished = "length" if bool(out.truncated[0]) else "stop"
            completion = CompletionOutput(0, "", tokens, None, logprobs, finished,
                                          tokens[-1] if finished == "stop" else None)
            outputs.append(RequestOutput(str(i), None, list(prompt["prompt_token_ids"]), None, [completion]))
        return outputs

    def apply_model(self, func):
        self.calls.append(("apply_model",))
        if not self.weights_awake:
            raise RuntimeError("fake vLLM: writing weights into freed memory (wake_up(tags=['weights']) first)")
        return [func(self.worker)]

    def collective_rpc(self, method, timeout=None, args=(), kwargs=None):
        self.calls.append(("collective_rpc", method))
        if method == "reload_weights":
            fresh = GlmForCausalLM.from_pretrained(self.model_path)
            self.model.load_state_dict(fresh.state_dict())
        return [None]

    def reset_prefix_cache(self):
        self.calls.append(("reset_prefix_cache",))
        return True

    def sleep(self, level: int = 1):
        self.calls.append(("sleep", level))
        if not self.enable_sleep_mode:
            raise RuntimeError("fake vLLM: sleep mode not enabled")
        if level == 2:
            with torch.no_grad():
                for p in self.model.parameters():
                    p.fill_(float("nan"))
        self.weights_awake = self.kv_awake = False

    def wake_up(self, tags: list[str] | None = None):
        self.calls.append(("wake_up", tuple(tags) if tags else None))
        if tags is None or "weights" in tags:
            self.weights_awake = True
        if tags is None or "kv_cache" in tags:
            self.kv_awake = True

    def names(self) -> list:
        """The calls' names in order, e.g. ['wake_up', 'apply_model', ...]."""
        return [c[0] for c in self.calls]


def module() -> types.ModuleType:
    """A ``vllm`` module object to put in ``sys.modules``."""
    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams = LLM, SamplingParams
    fake.RequestOutput, fake.CompletionOutput = RequestOutput, CompletionOutput
    return fake
