"""GLM for causal and blank-infilling language modelling, GLM-1 and GLM-4 variants, in one file.

Read top to bottom: the attention mask, 2D rotary embeddings, the block (attention + MLP), the
model, the LM head with its loss and generation hooks.

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
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from .configuration import GLMConfig

# --------------------------------------------------------------------------------------------
# Attention mask: built once per forward, shared by every layer.
# --------------------------------------------------------------------------------------------


def build_attention_mask(
    batch_size: int,
    query_length: int,
    past_length: int,
    device: torch.device,
    attention_mask: torch.Tensor | None = None,
    part_a_length: torch.Tensor | None = None,
    sequence_ids: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Boolean ``(B, 1, Lq, Lk)`` mask (True = may attend), or ``None`` for plain causal attention.

    Key ``k`` is visible to query ``q`` when ``k <= q`` or ``k`` lies in Part A (``k < part_a_length``),
    the key is not padding, and both belong to the same packed sequence. Query indices count from
    ``past_length`` (the KV cache). A query may always see itself, so padded rows never produce NaN.
    """
    key_length = past_length + query_length
    if attention_mask is not None and bool(attention_mask.all()):
        attention_mask = None
    if attention_mask is None and part_a_length is None and sequence_ids is None:
        if past_length == 0 or query_length == 1:
            return None  # SDPA's own causal path (or a single query that sees the whole cache)
    q_index = torch.arange(past_length, key_length, device=device).view(1, -1, 1)
    k_index = torch.arange(key_length, device=device).view(1, 1, -1)
    allowed = k_index <= q_index
    if part_a_length is not None:
        part_a_length = torch.as_tensor(part_a_length, device=device).view(-1, 1, 1)
        allowed = allowed | (k_index < part_a_length)
    allowed = allowed.expand(batch_size, query_length, key_length)
    if attention_mask is not None:
        if attention_mask.shape[-1] != key_length:
            raise ValueError(
                f"attention_mask covers {attention_mask.shape[-1]} positions but the cache and input "
                f"hold {key_length}"
            )
        allowed = allowed & attention_mask.bool()[:, None, :]
    if sequence_ids is not None:
        if sequence_ids.shape[-1] != key_length:
            raise ValueError(f"sequence_ids covers {sequence_ids.shape[-1]} positions, expected {key_length}")
        query_ids = sequence_ids[:, past_length:]
        allowed = allowed & (query_ids[:, :, None] == sequence_ids[:, None, :])
    allowed = allowed | (k_index == q_index)
    return allowed[:, None]


# --------------------------------------------------------------------------------------------
# 2D rotary position embeddings (GLM-4 variant).
# --------------------------------------------------------------------------------------------


class GLMRotaryEmbedding(nn.Module):
    """cos/sin for the 2D RoPE: ``rotary_dim`` channels by text position, as many by span position.

    Frequencies follow transformers' ``GlmRotaryEmbedding``: ``theta^(-2i/rotary_dim)``, one per
    interleaved pair of channels. They are computed on the fly (a few values) so there is no buffer to
    save, load or re-initialise.
    """

    def __init__(self, config: GLMConfig):
        super().__init__()
        self.rotary_dim = config.rotary_dim
        self.base = config.rope_theta

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """position_ids (B, 2, L) -> cos, sin of shape (B, 1, L, 2 * rotary_dim), or (B, 1, L,
        rotary_dim) when every span position is 0: the span half would rotate by 0, so it is left
        out and passes unchanged (the plain causal case costs what GlmForCausalLM's RoPE costs)."""
        exponent = torch.arange(0, self.rotary_dim, 2, device=position_ids.device, dtype=torch.float32)
        inv_freq = 1.0 / (self.base ** (exponent / self.rotary_dim))
        if not bool(position_ids[:, 1].any()):
            position_ids = position_ids[:, :1]
        freqs = position_ids.float()[..., None] * inv_freq  # (B, 1 or 2, L, rotary_dim/2)
        freqs = freqs.repeat_interleave(2, dim=-1)  # pair (2i, 2i+1) shares frequency i
        freqs = torch.cat(freqs.unbind(1), dim=-1)  # (B, L, rotary_dim or 2 * rotary_dim)
        return freqs.cos().to(dtype)[:, None], freqs.sin().to(dtype)[:, None]


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
    def __init__(self, config: GLMConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.dropout = config.attention_dropout
        glm1 = config.architecture == "glm1"
        qkv_bias = True if glm1 else config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=glm1)
        self.o_proj.is_residual_output = True

    def forward(self, hidden_states, rotary, attention_mask, cache: Cache | None):
        batch, length, _ = hidden_states.shape
        q = self.q_proj(hidden_states).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(hidden_states).view(batch, length, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(hidden_states).view(batch, length, self.num_kv_heads, self.head_dim).transpose(1, 2)
        if rotary is not None:
            cos, sin = rotary
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        out = F.scaled_dot_product_attention(
            q, k, v,
            attn_mask=attention_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=attention_mask is None and length > 1,
            enable_gqa=self.num_kv_heads != self.num_heads,
        )
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1))


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

    def forward(self, hidden_states, rotary=None, attention_mask=None, cache=None):
        attn = self.self_attn(self.input_layernorm(hidden_states), rotary, attention_mask, cache)
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


def _split_positions(position_ids: torch.Tensor | None, batch: int, length: int, past: int, device,
                     attention_mask: torch.Tensor | None = None):
    """Normalise ``position_ids`` to ``(B, 2, L)``: (text position, span position).

    Without ``position_ids``, text positions come from a 2D ``attention_mask`` (see
    :func:`text_positions_from_mask`), else count on from the cache length ``past``."""
    if position_ids is None:
        if attention_mask is not None and attention_mask.dim() == 2:
            if attention_mask.shape[-1] != past + length:
                raise ValueError(
                    f"attention_mask covers {attention_mask.shape[-1]} positions but the cache and input "
                    f"hold {past + length}"
                )
            text = text_positions_from_mask(attention_mask.to(device), length).expand(batch, length)
        else:
            text = torch.arange(past, past + length, device=device).expand(batch, length)
        return torch.stack([text, torch.zeros_like(text)], dim=1)
    if position_ids.dim() == 2:
        position_ids = torch.stack([position_ids, torch.zeros_like(position_ids)], dim=1)
    if position_ids.dim() != 3 or position_ids.shape[1] != 2:
        raise ValueError(f"position_ids must be (B, L) or (B, 2, L), got shape {tuple(position_ids.shape)}")
    if position_ids.shape[0] != batch and position_ids.shape[0] == 1:
        position_ids = position_ids.expand(batch, -1, -1)
    return position_ids


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
        output_hidden_states: bool | None = None,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        batch, length, _ = inputs_embeds.shape
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if self.gradient_checkpointing and self.training:
            use_cache = False
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        past = cache.get_seq_length() if cache is not None else 0
        positions = _split_positions(position_ids, batch, length, past, inputs_embeds.device, attention_mask)

        hidden = inputs_embeds
        rotary = None
        if self.rotary is None:
            if int(positions.max()) >= self.config.max_position_embeddings:
                raise ValueError(
                    f"position {int(positions.max())} is beyond max_position_embeddings="
                    f"{self.config.max_position_embeddings} of this GLM-1 model"
                )
            hidden = hidden + self.embed_positions(positions[:, 0]) + self.embed_block_positions(positions[:, 1])
        else:
            rotary = self.rotary(positions, hidden.dtype)
        hidden = self.embed_dropout(hidden)

        mask = build_attention_mask(batch, length, past, hidden.device, attention_mask, part_a_length, sequence_ids)
        all_hidden = [] if output_hidden_states else None
        for layer in self.layers:
            if all_hidden is not None:
                all_hidden.append(hidden)
            hidden = layer(hidden, rotary=rotary, attention_mask=mask, cache=cache if use_cache else None)
        hidden = self.norm(hidden)
        if all_hidden is not None:
            all_hidden.append(hidden)
        return BaseModelOutputWithPast(
            last_hidden_state=hidden,
            cache=cache if use_cache else None,
            hidden_states=tuple(all_hidden) if all_hidden is not None else None,
        )


class GLMForCausalLM(GLMPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

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
        output_hidden_states: bool | None = None,
        past_key_values: Cache | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        return_dict: bool | None = None,
        return_logits: bool = True,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Logits, and the mean cross-entropy over non-ignored targets when ``labels`` (shifted
        here) or ``shift_labels`` (already aligned) is given. ``num_items_in_batch`` turns the mean
        into a sum divided by that count, for exact gradient accumulation. ``past_key_values`` is
        accepted as an alias of ``cache`` for callers written against older transformers.

        ``return_logits=False`` (training, with targets) applies the output layer only where there
        is a target: the same loss and gradients, without the logits of positions that have none
        (in blank infilling, Part A: most of the row), and ``logits`` is None."""
        if kwargs:
            unexpected = sorted(k for k in kwargs if k not in ("output_attentions", "cache_position"))
            if unexpected:
                raise TypeError(f"GLMForCausalLM.forward got unexpected arguments {unexpected}")
        if cache is None:
            cache = past_key_values
        outputs = self.model(
            input_ids=input_ids,
            position_ids=position_ids,
            attention_mask=attention_mask,
            part_a_length=part_a_length,
            sequence_ids=sequence_ids,
            cache=cache,
            use_cache=use_cache,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
        )
        hidden = outputs.last_hidden_state
        if labels is not None and shift_labels is not None:
            raise ValueError("pass labels (shifted inside the model) or shift_labels (aligned), not both")
        if labels is not None:
            shift_labels = F.pad(labels, (0, 1), value=-100)[:, 1:]
        if shift_labels is not None and not return_logits:
            has_target = shift_labels.to(hidden.device) != -100
            loss = causal_lm_loss(self.lm_head(hidden[has_target]), shift_labels.to(hidden.device)[has_target],
                                  num_items_in_batch)
            return CausalLMOutputWithPast(loss=loss, logits=None, cache=outputs.cache, hidden_states=outputs.hidden_states)
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden = hidden[:, -logits_to_keep:]
        elif isinstance(logits_to_keep, torch.Tensor):
            hidden = hidden[:, logits_to_keep]
        logits = self.lm_head(hidden)
        loss = None if shift_labels is None else causal_lm_loss(logits, shift_labels, num_items_in_batch)
        return CausalLMOutputWithPast(
            loss=loss, logits=logits, cache=outputs.cache, hidden_states=outputs.hidden_states
        )

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
