"""Checks that a retrained base written by `adaptable retrain` loads in transformers and computes
what the project computes (optional; run when a Python with torch and transformers is present).

Loads DIR with `AutoModel.from_pretrained` and `AutoTokenizer`, runs a few sentences, and compares
the last hidden states, pooled two ways (first token, and mean over real tokens), with what
`adaptable embed --model DIR --pooling cls|mean` prints for the same sentences. Prints the max
absolute difference and exits 1 when it exceeds --tol (default 1e-4).

Needs: torch, transformers.

Usage:
    cargo build --release -p adaptable-cli
    target/release/adaptable retrain --model models/minilm \
        --tasks datasets/text-tasks/pets.jsonl datasets/text-tasks/family.jsonl \
        datasets/text-tasks/food.jsonl --method lora-ml --out /tmp/retrained
    python3 scripts/hf_check_retrained.py /tmp/retrained [--adaptable target/release/adaptable]

`cargo test --release -p adaptable-cli --test hf_interop` runs both steps when a Python with torch and
transformers is found (ADAPTABLE_PYTHON, else python3).
"""

import argparse
import json
import subprocess
import sys

import torch
from transformers import AutoModel, AutoTokenizer

SENTENCES = [
    "i have two dogs and a cat.",
    "my mother is a nurse.",
    "i love to cook italian food on weekends.",
    "the band played until midnight.",
]


def ours(binary, model_dir, pooling):
    """Embeddings from `adaptable embed`, one list of floats per sentence."""
    out = subprocess.run(
        [binary, "-q", "embed", "--model", model_dir, "--pooling", pooling, *SENTENCES],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return torch.tensor([json.loads(line) for line in out.splitlines() if line.strip()])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir", help="a model directory written by `adaptable retrain`")
    parser.add_argument("--adaptable", default="target/release/adaptable")
    parser.add_argument("--tol", type=float, default=1e-4)
    args = parser.parse_args()

    tokenizer = AutoTokenizer.from_pretrained(args.dir)
    model, info = AutoModel.from_pretrained(
        args.dir, attn_implementation="eager", output_loading_info=True, add_pooling_layer=False
    )
    problems = {k: sorted(v) for k, v in info.items() if v and k != "error_msgs"}
    print(f"loading problems: {problems or 'none'}")
    model.eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state.float()
    mask = batch["attention_mask"].unsqueeze(-1).float()
    theirs = {
        "cls": hidden[:, 0],
        "mean": (hidden * mask).sum(1) / mask.sum(1),
    }
    worst = 0.0
    for pooling, value in theirs.items():
        diff = (ours(args.adaptable, args.dir, pooling) - value).abs().max().item()
        print(f"{pooling}: max |ours - transformers| = {diff:.3e}")
        worst = max(worst, diff)
    ok = worst <= args.tol and not problems
    print("OK" if ok else f"FAILED (tolerance {args.tol})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
