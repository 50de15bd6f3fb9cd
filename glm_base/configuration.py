"""``GLMConfig``: one config for both GLM architectures.

``architecture="glm1"`` is the original GLM (Du et al., 2022; THUDM/GLM): learned position and span
position embeddings, pre-LayerNorm blocks, GeLU MLP, output layer tied to the word embeddings.
``architecture="glm4"`` is the GLM-4 block as in transformers' ``GlmForCausalLM``: RMSNorm, SwiGLU,
grouped-query attention, bias on Q/K/V only, untied output layer, and 2D rotary embeddings (the first
rotary half of each head by text position, the second by span position).

Field names follow transformers' ``GlmConfig`` wherever a field exists there, so that export to
``GlmForCausalLM`` is a copy of values.
"""

from __future__ import annotations

from typing import Literal

from transformers import PretrainedConfig

ARCHITECTURES = ("glm1", "glm4")


class GLMConfig(PretrainedConfig):
    """Configuration of :class:`glm_base.modeling.GLMForCausalLM`.

    Fields left as ``None`` take the variant's default in ``__post_init__``: ``intermediate_size``
    (glm1: 4·hidden; glm4: 8/3·hidden rounded up to a multiple of 64), ``num_key_value_heads``
    (= ``num_attention_heads``), ``head_dim`` (hidden/heads), ``hidden_act`` (glm1:
    ``gelu_pytorch_tanh``; glm4: ``silu``), ``tie_word_embeddings`` (glm1: True; glm4: False).
    Inconsistent values raise ``ValueError`` naming the fields.

    ``reward_offset`` (float, default 0.0) is subtracted by ``GLMForSequenceClassification`` from its
    score when ``num_labels == 1`` (the reward model's centring offset, saved with the checkpoint).
    ``num_labels``/``id2label``/``problem_type`` are transformers' own classification fields.
    """

    model_type = "glm_base"
    keys_to_ignore_at_inference = ["cache"]

    architecture: Literal["glm1", "glm4"] = "glm4"
    vocab_size: int = 32000
    hidden_size: int = 512
    intermediate_size: int | None = None
    num_hidden_layers: int = 8
    num_attention_heads: int = 8
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str | None = None
    max_position_embeddings: int = 4096
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-5
    layer_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    partial_rotary_factor: float = 0.5
    # RoPE as transformers configures it: {"rope_type": "default" | "linear" | "dynamic" | "yarn" |
    # "longrope" | "llama3", "factor": ..., ...}; ``rope_scaling=`` is accepted as its old name.
    # rope_theta and partial_rotary_factor above fill it when it lacks them, and follow it otherwise.
    rope_parameters: dict | None = None
    attention_bias: bool = True
    attention_dropout: float = 0.0
    hidden_dropout: float = 0.0
    scaled_residual_init: bool = True
    use_cache: bool = True
    tie_word_embeddings: bool | None = None
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    # Auto class -> "module.Class" for checkpoints that ship their own code (trust_remote_code). Ours
    # do not: importing glm_base registers the classes. Always a dict (empty by default) because
    # tools read it for any architecture outside transformers, e.g. TRL's ``create_model_from_path``
    # (``config.auto_map or {}``) and transformers' own ``cls.__name__ in config.auto_map``.
    auto_map: dict[str, str] | None = None
    # GLMForSequenceClassification with num_labels == 1 (the reward model) subtracts this from its
    # scores: the reward stage stores the centring offset of its rewards here.
    reward_offset: float = 0.0

    def __post_init__(self, **kwargs):
        if self.auto_map is None:
            self.auto_map = {}
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"GLMConfig.architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        glm1 = self.architecture == "glm1"
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "max_position_embeddings"):
            if getattr(self, name) <= 0:
                raise ValueError(f"GLMConfig.{name} must be positive, got {getattr(self, name)}")
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(
                    f"GLMConfig: num_attention_heads={self.num_attention_heads} does not divide "
                    f"hidden_size={self.hidden_size}; choose heads that divide it or set head_dim"
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"GLMConfig: num_key_value_heads={self.num_key_value_heads} must divide "
                f"num_attention_heads={self.num_attention_heads} (grouped-query attention)"
            )
        if glm1 and self.num_key_value_heads != self.num_attention_heads:
            raise ValueError("GLMConfig: the glm1 architecture has no grouped-query attention; "
                             "set num_key_value_heads equal to num_attention_heads (or leave it unset)")
        if self.intermediate_size is None:
            if glm1:
                self.intermediate_size = 4 * self.hidden_size
            else:
                self.intermediate_size = -(-(8 * self.hidden_size // 3) // 64) * 64
        if self.hidden_act is None:
            self.hidden_act = "gelu_pytorch_tanh" if glm1 else "silu"
        if self.tie_word_embeddings is None:
            self.tie_word_embeddings = glm1
        super().__post_init__(**kwargs)  # fills and validates rope_parameters (rope_scaling -> rope_parameters)
        self.rope_theta = self.rope_parameters.get("rope_theta", self.rope_theta)
        self.partial_rotary_factor = self.rope_parameters.get("partial_rotary_factor", self.partial_rotary_factor)
        if not glm1:
            rotary_dim = int(self.head_dim * self.partial_rotary_factor)
            if rotary_dim <= 0 or rotary_dim % 2 or 2 * rotary_dim > self.head_dim:
                raise ValueError(
                    f"GLMConfig: 2D RoPE needs an even rotary dim with room for the span half: "
                    f"head_dim={self.head_dim} x partial_rotary_factor={self.partial_rotary_factor} "
                    f"gives {rotary_dim}; use partial_rotary_factor <= 0.5 and an even result"
                )

    @property
    def base_model_tp_plan(self) -> dict[str, str]:
        """Tensor-parallel plan of the base model, as transformers' ``GlmConfig`` has it: attention
        heads split column-wise (q/k/v) and joined row-wise (o); GLM-4's fused ``gate_up_proj`` is
        gathered before its ``chunk`` and ``down_proj`` takes the replicated input; GLM-1's plain MLP
        splits column-then-row. transformers adds ``embed_tokens`` (vocabulary rows) and the heads'
        plans (``lm_head``)."""
        attention = {
            "layers.*.self_attn.q_proj": "colwise",
            "layers.*.self_attn.k_proj": "colwise",
            "layers.*.self_attn.v_proj": "colwise",
            "layers.*.self_attn.o_proj": "rowwise",
        }
        if self.architecture == "glm1":
            return {**attention, "layers.*.mlp.up_proj": "colwise", "layers.*.mlp.down_proj": "rowwise"}
        return {**attention, "layers.*.mlp.gate_up_proj": "colwise_gather_output",
                "layers.*.mlp.down_proj": "rowwise_split_input"}

    @property
    def rotary_dim(self) -> int:
        """Channels of each head rotated by text position (the same number again by span position)."""
        return int(self.head_dim * self.partial_rotary_factor)


# Named sizes: a tiny model for tests is one name away (litgpt's habit).
MODEL_SIZES: dict[str, dict] = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 max_position_embeddings=1024),
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
                  max_position_embeddings=2048),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4,
                 max_position_embeddings=4096),
    "glm4-9b": dict(hidden_size=4096, num_hidden_layers=40, num_attention_heads=32, num_key_value_heads=2,
                    intermediate_size=13696, head_dim=128, max_position_embeddings=131072,
                    rms_norm_eps=1.5625e-07, vocab_size=151552),
}


def config_for_size(size: str, **overrides) -> GLMConfig:
    """A :class:`GLMConfig` from a named size, with field overrides (e.g. ``architecture="glm1"``)."""
    if size not in MODEL_SIZES:
        raise ValueError(f"unknown model size {size!r}; known sizes: {sorted(MODEL_SIZES)}")
    values = dict(MODEL_SIZES[size])
    if overrides.get("architecture") == "glm1":
        values.pop("num_key_value_heads", None)
    values.update(overrides)
    return GLMConfig(**values)
