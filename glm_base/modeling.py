"""GLM for causal and blank-infilling language modelling, GLM-1 and GLM-4 variants, in one file.

Read top to bottom: 2D rotary embeddings, the block (attention + MLP), the model, the LM head with
its loss and generation hooks, the sequence-classification (reward) head. GLM's attention mask and
the eager attention live in :mod:`glm_base.attention`.

Inputs beyond the usual ``input_ids``/``attention_mask``:

- ``position_ids``: ``(B, 2, L)`` = (position in the corrupted text, position inside the span), or
  ``(B, L)`` (span positions are then 0, which is plain causal LM). Without them, text positions
  follow the 2D ``attention_mask`` as ``generate`` numbers a left-padded batch (0 at the first real
  token of each row; the cache length is accounted for), so a recomputed forward sees the rollout's.
- ``part_a_length``: ``(B,)``. Tokens before it (Part A) attend bidirectionally among themselves;
  tokens from it on (Part B) see all of Part A and are causal among themselves. ``None`` = causal.
- ``sequence_ids``: ``(B, L)`` for packed rows: tokens attend only within their own sequence id.
- ``labels`` are shifted inside the model (transformers convention); ``shift_labels`` are targets
  already aligned with the inputs (GLM's blank-infilling targets: the target at ``<sop>`` is the
  span's first token).

The GLM-4 variant's weights carry transformers' ``GlmForCausalLM`` names, so export is a copy; with
span positions 0 its logits equal ``GlmForCausalLM``'s.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.loss.loss_utils import ForSequenceClassificationLoss
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    SequenceClassifierOutputWithPast,
)
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, dynamic_rope_update
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils.generic import TransformersKwargs, is_flash_attention_requested
from transformers.utils.output_capturing import capture_outputs

from .attention import (  # noqa: F401 (build_attention_mask re-exported)
    build_attention_mask, eager_attention_forward, flash_varlen_kwargs, glm_attention_mask, segment_attention_forward,
    varlen_segments,
)
from .configuration import GLMConfig

# Keyword arguments transformers' callers may pass to a forward (output flags, flash-attention varlen
# lengths, ...); anything else is a mistake and raises TypeError. ``cache_position`` is accepted and
# ignored (older callers send it; positions come from ``position_ids`` or the mask).
FORWARD_KWARGS = frozenset(TransformersKwargs.__annotations__) | {"cache_position"}


def check_forward_kwargs(where: str, kwargs: dict) -> None:
    unexpected = sorted(set(kwargs) - FORWARD_KWARGS)
    if unexpected:
        raise TypeError(f"{where} got unexpected arguments {unexpected}")
    kwargs.pop("cache_position", None)


# --------------------------------------------------------------------------------------------
# 2D rotary position embeddings (GLM-4 variant).
# --------------------------------------------------------------------------------------------


class GLMRotaryEmbedding(nn.Module):
    """cos/sin for the 2D RoPE: ``rotary_dim`` channels by text position, as many by span position.

    Text frequencies are transformers' for ``config.rope_parameters`` (``default``:
    ``theta^(-2i/rotary_dim)``, one per interleaved pair of channels, as ``GlmRotaryEmbedding``; or a
    scaled type from ``ROPE_INIT_FUNCTIONS`` with its attention scaling, and ``dynamic``/``longrope``
    updates), so a GLM-4-variant model with scaled RoPE exports to ``GlmForCausalLM`` unchanged. Span
    positions count inside one span (short), so the span half always uses the default frequencies
    and no scaling: span position 0 is the identity, and plain causal input equals
    ``GlmForCausalLM``'s whatever the scaling.
    """

    def __init__(self, config: GLMConfig):
        super().__init__()
        self.config = config
        self.rotary_dim = config.rotary_dim
        self.rope_type = config.rope_parameters.get("rope_type", "default")
        self.max_seq_len_cached = self.original_max_seq_len = config.max_position_embeddings
        if self.rope_type == "default":
            inv_freq, self.attention_scaling = self.compute_default_rope_parameters(config)
        else:
            inv_freq, self.attention_scaling = ROPE_INIT_FUNCTIONS[self.rope_type](config)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("original_inv_freq", inv_freq.clone(), persistent=False)

    @staticmethod
    def compute_default_rope_parameters(config: GLMConfig, device=None, **kwargs) -> tuple[torch.Tensor, float]:
        """Unscaled frequencies ``theta^(-2i/rotary_dim)`` and attention scaling 1."""
        exponent = torch.arange(0, config.rotary_dim, 2, dtype=torch.float32, device=device)
        return 1.0 / (config.rope_theta ** (exponent / config.rotary_dim)), 1.0

    def forward(self, x: torch.Tensor, text_positions: torch.Tensor,
                span_positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions (B, L) -> cos, sin of shape (B, 1, L, 2 * rotary_dim) in ``x``'s dtype, or (B, 1, L,
        rotary_dim) without span positions: the span half would rotate by 0, so it is left out and
        passes unchanged (the plain causal case costs what GlmForCausalLM's RoPE costs). The choice
        depends on whether span positions were given, never on their values (one compiled graph)."""
        cos, sin = self.text_rotation(x, text_positions)
        if span_positions is not None:
            span_freq, _ = self.compute_default_rope_parameters(self.config, device=x.device)
            angles = (span_positions.float()[..., None] * span_freq).repeat_interleave(2, dim=-1)
            cos = torch.cat([cos, angles.cos().to(x.dtype)], dim=-1)
            sin = torch.cat([sin, angles.sin().to(x.dtype)], dim=-1)
        return cos[:, None], sin[:, None]

    @dynamic_rope_update
    def text_rotation(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # pair (2i, 2i+1) shares frequency i
        angles = (position_ids.float()[..., None] * self.inv_freq.to(x.device)).repeat_interleave(2, dim=-1)
        cos, sin = angles.cos() * self.attention_scaling, angles.sin() * self.attention_scaling
        return cos.to(x.dtype), sin.to(x.dtype)


def rotate_interleaved(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...): the rotation of each interleaved pair."""
    return torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``cos.shape[-1]`` channels of every head; the rest pass unchanged."""
    width = cos.shape[-1]
    rotated, passed = x[..., :width], x[..., width:]
    return torch.cat([rotated * cos + rotate_interleaved(rotated) * sin, passed], dim=-1)


# --------------------------------------------------------------------------------------------
# The block.
# --------------------------------------------------------------------------------------------


class GLMRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def make_norm(config: GLMConfig) -> nn.Module:
    if config.architecture == "glm1":
        return nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
    return GLMRMSNorm(config.hidden_size, eps=config.rms_norm_eps)


class GLMAttention(nn.Module):
    """Self-attention through transformers' attention interface: ``config._attn_implementation``
    picks eager, sdpa, flex_attention or flash_attention_*. Asked for its weights
    (``output_attentions``), sdpa runs this layer eagerly for that call."""

    def __init__(self, config: GLMConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_causal = True
        glm1 = config.architecture == "glm1"
        qkv_bias = True if glm1 else config.attention_bias
        heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.q_proj = nn.Linear(config.hidden_size, heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(config.hidden_size, kv_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(config.hidden_size, kv_heads * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(heads * self.head_dim, config.hidden_size, bias=glm1)
        self.o_proj.is_residual_output = True

    def forward(self, hidden_states, rotary, attention_mask, cache: Cache | None, **kwargs):
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        q = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        k = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        v = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        if rotary is not None:
            cos, sin = rotary
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        implementation = self.config._attn_implementation
        if kwargs.get("output_attentions") and implementation == "sdpa":
            implementation = "eager"
        segments = kwargs.pop("segments", None)
        if segments is not None and implementation == "sdpa":
            out, weights = segment_attention_forward(
                self, q, k, v, segments, scaling=self.scaling, dropout=self.attention_dropout if self.training else 0.0)
            return self.o_proj(out.reshape(*input_shape, -1).contiguous()), weights
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        out, weights = attention(
            self, q, k, v, attention_mask,
            dropout=self.attention_dropout if self.training else 0.0, scaling=self.scaling, **kwargs,
        )
        return self.o_proj(out.reshape(*input_shape, -1).contiguous()), weights


class GLMMLP(nn.Module):
    """GLM-4: SwiGLU with a fused gate/up projection (``gate_up_proj``). GLM-1: GeLU(tanh) MLP with bias."""

    def __init__(self, config: GLMConfig):
        super().__init__()
        self.gated = config.architecture == "glm4"
        width = 2 * config.intermediate_size if self.gated else config.intermediate_size
        name_in = "gate_up_proj" if self.gated else "up_proj"
        setattr(self, name_in, nn.Linear(config.hidden_size, width, bias=not self.gated))
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=not self.gated)
        self.down_proj.is_residual_output = True
        self.act = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
            return self.down_proj(up * self.act(gate))
        return self.down_proj(self.act(self.up_proj(x)))


class GLMDecoderLayer(GradientCheckpointingLayer):
    """Pre-norm block: ``h + attn(norm(h))`` then ``h + mlp(norm(h))`` (both variants)."""

    def __init__(self, config: GLMConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = make_norm(config)
        self.self_attn = GLMAttention(config, layer_idx)
        self.post_attention_layernorm = make_norm(config)
        self.mlp = GLMMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, hidden_states, rotary=None, attention_mask=None, cache=None, **kwargs):
        attn, _ = self.self_attn(self.input_layernorm(hidden_states), rotary, attention_mask, cache, **kwargs)
        hidden_states = hidden_states + self.dropout(attn)
        mlp = self.mlp(self.post_attention_layernorm(hidden_states))
        return hidden_states + self.dropout(mlp)


# --------------------------------------------------------------------------------------------
# The model.
# --------------------------------------------------------------------------------------------


class GLMPreTrainedModel(PreTrainedModel):
    config_class = GLMConfig
    config: GLMConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["GLMDecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_record_outputs = {"hidden_states": GLMDecoderLayer, "attentions": GLMAttention}
    _can_compile_fullgraph = True  # static-cache decoding compiles to one graph (generate's auto-compile)

    def _init_weights(self, module):
        """Normal(0, initializer_range); residual output projections (``o_proj``, ``down_proj``) with
        std / sqrt(2 · layers) as in THUDM/GLM and GPT-2 when ``scaled_residual_init``."""
        if getattr(module, "is_residual_output", False) and self.config.scaled_residual_init:
            std = self.config.initializer_range / math.sqrt(2.0 * self.config.num_hidden_layers)
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
            return
        super()._init_weights(module)


def text_positions_from_mask(attention_mask: torch.Tensor, length: int) -> torch.Tensor:
    """Text positions of the last ``length`` tokens under a 2D padding mask covering cache + input:
    real tokens count 0, 1, 2, ... from the row's first real token, padding gets 0 (as
    ``generate`` numbers a left-padded prompt, so a forward recomputed on prompt + response without
    positions sees the positions the rollout saw)."""
    positions = attention_mask.long().cumsum(-1) - 1
    positions = positions.masked_fill(attention_mask == 0, 0)
    return positions[:, -length:]


def split_positions(position_ids: torch.Tensor | None, batch: int, length: int, past: int, device,
                    attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(text positions (B, L), span positions (B, L) or None when the input has none).

    ``position_ids`` may be ``(B, 2, L)`` or ``(B, L)``. Without them, text positions come from a 2D
    ``attention_mask`` (see :func:`text_positions_from_mask`), else count on from the cache length."""
    if position_ids is None:
        if attention_mask is not None and attention_mask.dim() == 2:
            if attention_mask.shape[-1] != past + length:
                raise ValueError(
                    f"attention_mask covers {attention_mask.shape[-1]} positions but the cache and input "
                    f"hold {past + length}"
                )
            return text_positions_from_mask(attention_mask.to(device), length).expand(batch, length), None
        return torch.arange(past, past + length, device=device).expand(batch, length), None
    if position_ids.dim() == 2:
        return position_ids.expand(batch, -1), None
    if position_ids.dim() != 3 or position_ids.shape[1] != 2:
        raise ValueError(f"position_ids must be (B, L) or (B, 2, L), got shape {tuple(position_ids.shape)}")
    position_ids = position_ids.expand(batch, -1, -1)
    return position_ids[:, 0], position_ids[:, 1]


class GLMModel(GLMPreTrainedModel):
    def __init__(self, config: GLMConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        if config.architecture == "glm1":
            self.embed_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
            self.embed_block_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
            self.rotary = None
        else:
            self.rotary = GLMRotaryEmbedding(config)
        self.embed_dropout = nn.Dropout(config.hidden_dropout)
        self.layers = nn.ModuleList(GLMDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = make_norm(config)
        self.gradient_checkpointing = False
        self.post_init()

    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        part_a_length: torch.Tensor | None = None,
        sequence_ids: torch.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        """Final hidden states (and ``hidden_states``/``attentions`` of every layer when
        ``output_hidden_states``/``output_attentions`` is passed or set on the config; ``return_dict=False``
        gives a tuple). A given ``cache`` (or its alias ``past_key_values``) is continued and updated;
        ``use_cache`` (default ``config.use_cache``) starts one when none is given and returns it."""
        check_forward_kwargs(f"{type(self).__name__}.forward", kwargs)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if cache is None:
            cache = past_key_values
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        batch, length, _ = inputs_embeds.shape
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if self.gradient_checkpointing and self.training:
            use_cache = False
        fresh_cache = cache is None
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        past = cache.get_seq_length() if cache is not None else 0
        if sequence_ids is not None and not torch.compiler.is_compiling() and sequence_ids.shape[-1] != past + length:
            raise ValueError(f"sequence_ids covers {sequence_ids.shape[-1]} positions, expected {past + length}")
        text, span = split_positions(position_ids, batch, length, past, inputs_embeds.device, attention_mask)

        hidden = inputs_embeds
        rotary = None
        if self.rotary is None:
            if not torch.compiler.is_compiling() and int(text.max()) >= self.config.max_position_embeddings:
                raise ValueError(
                    f"position {int(text.max())} is beyond max_position_embeddings="
                    f"{self.config.max_position_embeddings} of this GLM-1 model"
                )
            span = torch.zeros_like(text) if span is None else span
            hidden = hidden + self.embed_positions(text) + self.embed_block_positions(span)
        else:
            rotary = self.rotary(hidden, text, span)
        hidden = self.embed_dropout(hidden)

        # Caller-given (B, L) positions may mark padding-free packed rows (positions restarting).
        packed_positions = position_ids if position_ids is not None and position_ids.dim() == 2 else None
        mask_cache = None if fresh_cache else cache
        kv_length = past + length if mask_cache is None else cache.get_mask_sizes(length, 0)[0]  # static: its size
        segments = None
        if not torch.compiler.is_compiling() and past == 0 and length > 1:
            output_attentions = kwargs.get("output_attentions") or self.config.output_attentions
            segments = varlen_segments(self.config, sequence_ids, attention_mask, part_a_length, output_attentions)
        if segments is not None:
            mask = None
            if is_flash_attention_requested(self.config):  # flash's own varlen kernel over the flattened batch
                kwargs.update(flash_varlen_kwargs(segments, length, inputs_embeds.device))
            else:
                kwargs["segments"] = segments
        else:
            mask = glm_attention_mask(self.config, inputs_embeds, attention_mask, mask_cache, packed_positions,
                                      part_a_length, sequence_ids, kv_length)
        for layer in self.layers:
            hidden = layer(hidden, rotary=rotary, attention_mask=mask, cache=cache, position_ids=text, **kwargs)
        hidden = self.norm(hidden)
        return BaseModelOutputWithPast(last_hidden_state=hidden, cache=cache if use_cache else None)


class GLMForCausalLM(GLMPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}

    def __init__(self, config: GLMConfig):
        super().__init__(config)
        self.model = GLMModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        part_a_length: torch.Tensor | None = None,
        sequence_ids: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        shift_labels: torch.LongTensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        past_key_values: Cache | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        return_dict: bool | None = None,
        return_logits: bool = True,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Logits, and the mean cross-entropy over non-ignored targets when ``labels`` (shifted
        here) or ``shift_labels`` (already aligned) is given; given both, ``shift_labels`` wins (the
        convention of transformers' Trainer, which passes both). ``num_items_in_batch`` turns the
        mean into a sum divided by that count, for exact gradient accumulation. ``past_key_values``
        is an alias of ``cache``. ``output_hidden_states``/``output_attentions`` (or the config's
        flags) add every layer's hidden states/attention weights; ``return_dict=False`` gives a tuple.

        ``return_logits=False`` (training, with targets) applies the output layer only where there
        is a target: the same loss and gradients, without the logits of positions that have none
        (in blank infilling, Part A: most of the row), and ``logits`` is None."""
        check_forward_kwargs(f"{type(self).__name__}.forward", kwargs)
        outputs = self.model(
            input_ids=input_ids,
            position_ids=position_ids,
            attention_mask=attention_mask,
            part_a_length=part_a_length,
            sequence_ids=sequence_ids,
            cache=cache if cache is not None else past_key_values,
            use_cache=use_cache,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        hidden = outputs.last_hidden_state
        if shift_labels is None and labels is not None:
            shift_labels = F.pad(labels, (0, 1), value=-100)[:, 1:]
        loss = logits = None
        if shift_labels is not None and not return_logits:
            has_target = shift_labels.to(hidden.device) != -100
            loss = causal_lm_loss(self.lm_head(hidden[has_target]), shift_labels.to(hidden.device)[has_target],
                                  num_items_in_batch)
        else:
            if isinstance(logits_to_keep, int) and logits_to_keep > 0:
                hidden = hidden[:, -logits_to_keep:]
            elif isinstance(logits_to_keep, torch.Tensor):
                hidden = hidden[:, logits_to_keep]
            logits = self.lm_head(hidden)
            if shift_labels is not None:
                loss = causal_lm_loss(logits, shift_labels, num_items_in_batch)
        result = CausalLMOutputWithPast(loss=loss, logits=logits, cache=outputs.cache,
                                        hidden_states=outputs.hidden_states, attentions=outputs.attentions)
        return_dict = self.config.return_dict if return_dict is None else return_dict
        return result if return_dict else result.to_tuple()

    def create_masks_for_generate(self, config=None, inputs_embeds=None, attention_mask=None, cache=None, **kwargs):
        """``generate`` asks for the mask ahead of the forward when the cache is static (compiled
        decoding). Ours is built in the forward, which alone sees ``part_a_length``/``sequence_ids``;
        here the 2D mask is only right-padded with zeros to the static cache's size, so every
        decoding step has the same shapes (one compiled graph); the padding marks the cache's empty
        slots, which are masked anyway."""
        if attention_mask is not None and attention_mask.dim() == 2 and cache is not None:
            kv_length = cache.get_mask_sizes(inputs_embeds.shape[1], 0)[0]
            attention_mask = F.pad(attention_mask, (0, kv_length - attention_mask.shape[-1]))
        return attention_mask

    # --- generation hooks: 2D positions continue a span inside Part B ------------------------

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, is_encoder_decoder=False, num_new_tokens=1):
        position_ids = model_kwargs.pop("position_ids", None)
        model_kwargs = super()._update_model_kwargs_for_generation(
            outputs, model_kwargs, is_encoder_decoder=is_encoder_decoder, num_new_tokens=num_new_tokens
        )
        if position_ids is not None:
            model_kwargs["position_ids"] = extend_positions(position_ids, num_new_tokens)
        return model_kwargs

    def _expand_inputs_for_generation(self, expand_size=1, is_encoder_decoder=False, input_ids=None, **model_kwargs):
        position_ids = model_kwargs.pop("position_ids", None)
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size=expand_size, is_encoder_decoder=is_encoder_decoder, input_ids=input_ids, **model_kwargs
        )
        if position_ids is not None:
            model_kwargs["position_ids"] = position_ids.repeat_interleave(expand_size, dim=0)
        return input_ids, model_kwargs


class GLMForSequenceClassification(GLMPreTrainedModel):
    """A score head on the last real token, as transformers' ``*ForSequenceClassification``: one
    bias-free linear layer ``score`` (hidden -> ``config.num_labels``) applied to the final hidden
    state of each row's last non-padding token, which is the last position where ``attention_mask``
    is 1, else the last token that is not ``pad_token_id``, else the last token (batch of one without
    a pad token). Left and right padding both work.

    Loss as transformers computes it (``config.problem_type``, inferred when unset): ``num_labels ==
    1`` regression (MSE), integer labels single-label cross-entropy, else multi-label BCE.

    With ``num_labels == 1`` this is the reward model: its score is ``score(h) - config.reward_offset``
    (the reward stage stores a centring offset there, so a saved reward model gives centred rewards
    with no extra file). The GLM-4 variant exports to transformers' ``GlmForSequenceClassification``
    (see :mod:`glm_base.export`)."""

    def __init__(self, config: GLMConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = GLMModel(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        part_a_length: torch.Tensor | None = None,
        sequence_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutputWithPast:
        """Scores ``(B, num_labels)``, the loss against ``labels`` when given. Raises ValueError for a
        batch of several rows with neither ``attention_mask`` nor ``pad_token_id`` to find their ends."""
        check_forward_kwargs(f"{type(self).__name__}.forward", kwargs)
        outputs = self.model(
            input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
            part_a_length=part_a_length, sequence_ids=sequence_ids,
            cache=cache if cache is not None else past_key_values, use_cache=use_cache,
            inputs_embeds=inputs_embeds, return_dict=True, **kwargs,
        )
        hidden = outputs.last_hidden_state
        batch, length = hidden.shape[:2]
        last = self.last_token_index(input_ids, attention_mask, batch, length, hidden.device)
        scores = self.score(hidden[torch.arange(batch, device=hidden.device), last])
        if self.num_labels == 1 and self.config.reward_offset:
            scores = scores - self.config.reward_offset
        loss = None
        if labels is not None:
            loss = ForSequenceClassificationLoss(labels=labels, pooled_logits=scores, config=self.config)
        result = SequenceClassifierOutputWithPast(loss=loss, logits=scores, cache=outputs.cache,
                                                  hidden_states=outputs.hidden_states, attentions=outputs.attentions)
        return_dict = self.config.return_dict if return_dict is None else return_dict
        return result if return_dict else result.to_tuple()

    def last_token_index(self, input_ids, attention_mask, batch: int, length: int, device) -> torch.Tensor:
        """Index of each row's last non-padding token (see the class docstring for the rule)."""
        positions = torch.arange(length, device=device)
        if attention_mask is not None and attention_mask.dim() == 2:
            real = attention_mask[:, -length:].to(device).bool()
        elif input_ids is not None and self.config.pad_token_id is not None:
            real = input_ids.to(device) != self.config.pad_token_id
        elif batch == 1:
            return torch.full((1,), length - 1, device=device)
        else:
            raise ValueError(
                f"{type(self).__name__}: a batch of {batch} rows needs attention_mask or config.pad_token_id "
                f"to find each row's last token"
            )
        return (positions * real).argmax(-1)


def extend_positions(position_ids: torch.Tensor, count: int) -> torch.Tensor:
    """Positions for ``count`` generated tokens after ``position_ids``.

    ``(B, L)``: text positions continue. ``(B, 2, L)``: inside a span (last span position > 0) the
    text position stays at the span's mask and the span position counts up, as in GLM's Part B;
    outside a span the text position counts up and the span position stays 0.
    """
    steps = torch.arange(1, count + 1, device=position_ids.device, dtype=position_ids.dtype)
    if position_ids.dim() == 2:
        return torch.cat([position_ids, position_ids[:, -1:] + steps], dim=-1)
    last_text, last_span = position_ids[:, 0, -1:], position_ids[:, 1, -1:]
    in_span = last_span > 0
    text = torch.where(in_span, last_text, last_text + steps)
    span = torch.where(in_span, last_span + steps, torch.zeros_like(last_span + steps))
    return torch.cat([position_ids, torch.stack([text, span], dim=1)], dim=-1)


def causal_lm_loss(logits: torch.Tensor, targets: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """Cross-entropy of ``logits`` against aligned ``targets`` (-100 = ignored), in fp32."""
    logits = logits.float().reshape(-1, logits.shape[-1])
    targets = targets.reshape(-1).to(logits.device)
    if num_items_in_batch is None:
        return F.cross_entropy(logits, targets, ignore_index=-100)
    total = F.cross_entropy(logits, targets, ignore_index=-100, reduction="sum")
    if isinstance(num_items_in_batch, torch.Tensor):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch
