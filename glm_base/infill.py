"""``python -m glm_base.infill --checkpoint DIR "text with [MASK] ..."``: fill the blanks and print.

Several texts may be given; with ``--spans`` the generated span of each mask is printed too.
"""

from __future__ import annotations

import argparse

import torch

from common.cli import run_main
from common.errors import UserError

from .generation import infill_with_spans
from .loading import load_model_and_tokenizer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m glm_base.infill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", "--checkpoint", dest="checkpoint", required=True, help="model directory (a run's model/ or checkpoints/step-N/: model + tokenizer)")
    parser.add_argument("texts", nargs="+", help="texts containing [MASK], [sMASK] or a final [gMASK]")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="longest [MASK]/[sMASK] fill")
    parser.add_argument("--max-new-tokens-gmask", type=int, default=256, help="longest [gMASK] continuation")
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spans", action="store_true", help="also print each generated span")
    args = parser.parse_args(argv)
    run_main(lambda: fill(args))


def fill(args) -> None:
    torch.manual_seed(args.seed)
    model, tokenizer = load_model_and_tokenizer(args.checkpoint, eval_mode=True)
    for text in args.texts:
        try:
            result = infill_with_spans(model, tokenizer, text, max_new_tokens=args.max_new_tokens,
                                       max_new_tokens_gmask=args.max_new_tokens_gmask, do_sample=args.sample,
                                       temperature=args.temperature, top_p=args.top_p)
        except ValueError as err:
            raise UserError(f"{err}: {text!r}") from None
        print(result.text)
        if args.spans:
            for i, span in enumerate(result.spans):
                print(f"  span {i}: {span!r}")


if __name__ == "__main__":
    main()
