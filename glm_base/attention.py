"""GLM's attention mask and the eager attention, for the backends of transformers' attention interface.

GLM's pattern is the causal mask plus two overlays, written as transformers mask functions so that
``create_causal_mask`` turns them into whatever the configured backend takes (a boolean tensor for
sdpa, an additive one for eager, a ``BlockMask`` for flex attention) and handles padding, static
caches and padding-free rows as for transformers' own models:

- ``part_a_length`` ``(B,)``: keys before it (Part A) are visible to every query of the row, so Part
  A is bidirectional and Part B sees all of Part A (an *or* overlay);
- ``sequence_ids`` ``(B, L)``: a query sees only keys of its own packed sequence (an *and* overlay).

Flash attention knows causal attention over padding-free sequences only; asked to express either
overlay it is refused with a ValueError naming the backends that can.

Packed rows without a Part A under sdpa take a faster road than any mask (:func:`packed_segments`,
:func:`segment_attention_forward`): each packed sequence's causal attention runs on its own, the CPU
counterpart of flash attention's varlen kernels; under flash attention the same segments become
the varlen kernel's cumulative lengths (:func:`flash_varlen_kwargs`). A dense mask makes a row of ``L`` tokens pay for
``L**2`` scores however it is cut; run by segment, it pays ``sum(n_i**2) / 2`` (causal blocks skipped).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.integrations.sdpa_attention import repeat_kv
from transformers.masking_utils import and_masks, causal_mask_function, create_causal_mask, or_masks, sdpa_mask
from transformers.utils.generic import is_flash_attention_requested


# --------------------------------------------------------------------------------------------
# The mask: built once per forward, shared by every layer.
# --------------------------------------------------------------------------------------------


def glm_mask_functions(batch: int, kv_length: int, device, part_a_length=None, sequence_ids=None):
    """(or_mask_function, and_mask_function) for transformers' ``create_causal_mask``: Part A is
    added to the causal pattern (``kv < part_a_length[b]``), packed sequences cut it (query and key
    carry the same ``sequence_ids``). ``None`` where the input is absent.

    Both look up boolean/integer tables of ``kv_length`` keys (the cache's full size, so the empty
    tail of a static cache is neither Part A nor any sequence) instead of comparing indices with
    looked-up values: the form flex attention's CPU compiler accepts, as for transformers' padding
    mask."""
    or_function = and_function = None
    if part_a_length is not None:
        part_a = torch.as_tensor(part_a_length, device=device).reshape(-1)
        if part_a.numel() == 1 and batch > 1:
            part_a = part_a.expand(batch)
        in_part_a = torch.arange(kv_length, device=device)[None, :] < part_a[:, None]  # (B, Lk)

        def or_function(batch_idx, head_idx, q_idx, kv_idx):
            return in_part_a[batch_idx, kv_idx]

    if sequence_ids is not None:
        padded_ids = F.pad(sequence_ids.to(device), (0, kv_length - sequence_ids.shape[-1]), value=-1)

        def and_function(batch_idx, head_idx, q_idx, kv_idx):
            return padded_ids[batch_idx, q_idx] == padded_ids[batch_idx, kv_idx]

    return or_function, and_function


def build_attention_mask(
    batch_size: int,
    query_length: int,
    past_length: int,
    device: torch.device,
    attention_mask: torch.Tensor | None = None,
    part_a_length: torch.Tensor | None = None,
    sequence_ids: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """GLM's mask as the boolean ``(B, 1, Lq, Lk)`` tensor SDPA takes (True = may attend), or
    ``None`` for plain causal attention. For inspection and tests; the model builds the mask for its
    attention backend with :func:`glm_attention_mask`.

    Key ``k`` is visible to query ``q`` when ``k <= q`` or ``k`` lies in Part A (``k < part_a_length``),
    the key is not padding, and both belong to the same packed sequence. Query indices count from
    ``past_length`` (the KV cache).
    """
    or_function, and_function = glm_mask_functions(batch_size, past_length + query_length, device,
                                                    part_a_length, sequence_ids)
    mask_function = causal_mask_function
    if or_function is not None:
        mask_function = or_masks(mask_function, or_function)
    if and_function is not None:
        mask_function = and_masks(mask_function, and_function)
    return sdpa_mask(
        batch_size=batch_size, q_length=query_length, kv_length=past_length + query_length, q_offset=past_length,
        mask_function=mask_function, attention_mask=None if attention_mask is None else attention_mask.bool(),
        allow_is_causal_skip=or_function is None and and_function is None, device=device,
    )


def glm_attention_mask(config, inputs_embeds, attention_mask, cache, position_ids, part_a_length, sequence_ids,
                       kv_length: int):
    """The mask for ``config``'s attention backend (boolean for sdpa, additive for eager, a
    ``BlockMask`` for flex, the 2D padding mask or None for flash), through transformers'
    ``create_causal_mask`` so static caches, padding and padding-free rows (``position_ids``
    restarting, no ``attention_mask``) work as for transformers' own models.

    A 4D ``attention_mask`` is custom and used as given (boolean or additive). Raises ValueError when
    it comes with ``part_a_length``/``sequence_ids``, or when flash attention is asked to express
    them: flash kernels know only causal attention over padding-free sequences.
    """
    glm_pattern = part_a_length is not None or sequence_ids is not None
    if attention_mask is not None and attention_mask.dim() == 4:
        if glm_pattern:
            raise ValueError("a 4D attention_mask is used as given; fold part_a_length/sequence_ids into it "
                             "instead of passing them too")
        return attention_mask
    if glm_pattern and is_flash_attention_requested(config):
        raise ValueError(
            f"attn_implementation={config._attn_implementation!r} cannot express GLM's blank-infilling mask "
            f"(Part A bidirectional, packed sequence_ids); use 'sdpa', 'eager' or 'flex_attention' for "
            f"inputs with part_a_length or sequence_ids"
        )
    or_function, and_function = glm_mask_functions(inputs_embeds.shape[0], kv_length, inputs_embeds.device,
                                                    part_a_length, sequence_ids)
    return create_causal_mask(
        config=config, inputs_embeds=inputs_embeds, attention_mask=attention_mask, cache=cache,
        position_ids=None if glm_pattern else position_ids,
        or_mask_function=or_function, and_mask_function=and_function,
    )


# --------------------------------------------------------------------------------------------
# Packed rows: attention by segment (varlen).
# --------------------------------------------------------------------------------------------


def packed_segments(sequence_ids: torch.Tensor) -> list[list[tuple[int, int]]] | None:
    """Per row, the ``(start, end)`` runs of equal ``sequence_ids`` (padding, id 0, is a run too), or
    None when some sequence is not contiguous in its row (then only a mask can express it)."""
    ids = sequence_ids.detach().cpu()
    change = ids[:, 1:] != ids[:, :-1]
    segments = []
    for row, cuts in zip(ids.tolist(), change.tolist()):
        bounds = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [len(row)]
        runs = list(zip(bounds[:-1], bounds[1:]))
        if len({row[s] for s, _ in runs}) != len(runs):
            return None
        segments.append(runs)
    return segments


def varlen_segments(config, sequence_ids, attention_mask, part_a_length, output_attentions: bool = False):
    """The segments of :func:`packed_segments` when a forward without cache may run attention by
    segment, else None: sdpa, packed causal rows (``sequence_ids`` and no Part A), no weights asked
    for, no custom 4D mask, and a 2D ``attention_mask`` (if any) that masks only padding (id 0)."""
    if sequence_ids is None or part_a_length is not None or output_attentions:
        return None
    if config._attn_implementation != "sdpa" and not is_flash_attention_requested(config):
        return None
    if attention_mask is not None:
        if attention_mask.dim() != 2 or bool(((attention_mask == 0) & (sequence_ids != 0)).any()):
            return None
    return packed_segments(sequence_ids)


def flash_varlen_kwargs(segments: list[list[tuple[int, int]]], length: int, device) -> dict:
    """The segments as flash attention's varlen arguments over the batch flattened to one row
    (``cu_seq_lens_q/k``: int32 start offsets with the total at the end, ``max_length_q/k``), which
    transformers' flash integration passes to ``flash_attn_varlen_func`` when no mask is given."""
    starts = [row * length + start for row, runs in enumerate(segments) for start, _ in runs]
    cu = torch.tensor(starts + [len(segments) * length], dtype=torch.int32, device=device)
    longest = max(end - start for runs in segments for start, end in runs)
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}


def segment_attention_forward(module, query, key, value, segments, scaling: float, dropout: float = 0.0):
    """Causal attention run separately inside each ``(start, end)`` segment of each row (see
    :func:`packed_segments`): exactly the masked attention of packed rows for every real token,
    computed without the scores that cross segments. ``query`` (B, heads, L, D), ``key``/``value``
    (B, kv_heads, L, D); returns (B, L, heads, D) and no weights."""
    rows = []
    for b, runs in enumerate(segments):
        pieces = [
            F.scaled_dot_product_attention(
                query[b:b + 1, :, s:e], key[b:b + 1, :, s:e], value[b:b + 1, :, s:e], is_causal=True,
                dropout_p=dropout, scale=scaling, enable_gqa=module.num_key_value_groups > 1)
            for s, e in runs
        ]
        rows.append(pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=2))
    return torch.cat(rows, dim=0).transpose(1, 2).contiguous(), None


# --------------------------------------------------------------------------------------------
# Eager attention (the backend that returns its weights).
# --------------------------------------------------------------------------------------------


def eager_attention_forward(module, query, key, value, attention_mask, scaling: float, dropout: float = 0.0,
                            **kwargs):
    """Attention written out, returning its weights ``(B, heads, Lq, Lk)``. ``attention_mask`` may be
    additive (float), boolean (True = attend) or None, which means what it means to SDPA here (the
    mask sdpa skips): causal from the top-left corner for several queries, all keys for one."""
    key = repeat_kv(key, module.num_key_value_groups)
    value = repeat_kv(value, module.num_key_value_groups)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is None and query.shape[2] > 1:
        attention_mask = torch.ones(query.shape[2], key.shape[2], dtype=torch.bool, device=query.device).tril()
    if attention_mask is not None and attention_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    elif attention_mask is not None:
        scores = scores + attention_mask[..., : key.shape[-2]]
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights
