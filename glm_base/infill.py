"""``python -m glm_base.infill --checkpoint DIR "text with [MASK] ..."``: fill the blanks and print.

Several texts may be given; with ``--spans`` the generated span of each mask is printed too.
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import glm_base  # noqa: F401  (registers GLMForCausalLM with the auto classes)

from .generation import infill_with_spans


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m glm_base.infill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="glm_base checkpoint directory (model + tokenizer)")
    parser.add_argument("texts", nargs="+", help="texts containing [MASK], [sMASK] or a final [gMASK]")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="longest [MASK]/[sMASK] fill")
    parser.add_argument("--max-new-tokens-gmask", type=int, default=256, help="longest [gMASK] continuation")
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spans", action="store_true", help="also print each generated span")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
    model = AutoModelForCausalLM.from_pretrained(args.checkpoint).eval()
    for text in args.texts:
        try:
            result = infill_with_spans(model, tokenizer, text, max_new_tokens=args.max_new_tokens,
                                       max_new_tokens_gmask=args.max_new_tokens_gmask, do_sample=args.sample,
                                       temperature=args.temperature, top_p=args.top_p)
        except ValueError as err:
            raise SystemExit(f"error: {err}: {text!r}") from None
        print(result.text)
        if args.spans:
            for i, span in enumerate(result.spans):
                print(f"  span {i}: {span!r}")


if __name__ == "__main__":
    main()
