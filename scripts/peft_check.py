"""Checks our PEFT export against PEFT itself (optional; not run in CI).

Loads an adapter exported by `adaptable_models::peft::export_adapter` with PEFT on top of a base
exported by `export_base`, runs the same inputs as our model, and prints max |logit difference|.
Also loads the merged export (adapter folded into the base) with plain transformers, and PEFT's own
`merge_and_unload`.

Needs: torch, transformers, peft (any recent versions; safetensors comes with them).

Usage:
    ADAPTABLE_PEFT_CHECK_DIR=target/peft-check cargo test -p adaptable-models --release --test peft write_peft_check_files
    python3 scripts/peft_check.py target/peft-check

DIR holds base/, adapter/, merged/ and reference.json (see docs/peft.md). Exit status 1 when any
difference exceeds --tol.
"""

import argparse
import json
import os
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification


def load_hf(path):
    """Loads an HF directory and reports every key transformers did not match."""
    model, info = AutoModelForSequenceClassification.from_pretrained(
        path, attn_implementation="eager", output_loading_info=True
    )
    problems = {k: sorted(v) for k, v in info.items() if v and k != "error_msgs"}
    print(f"{os.path.basename(path)}: loading problems: {problems or 'none'}")
    return model, bool(problems)


def logits_of(model, ids, mask):
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits.float()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir", help="directory written by write_peft_check_files")
    parser.add_argument("--tol", type=float, default=1e-4)
    args = parser.parse_args()

    with open(os.path.join(args.dir, "reference.json")) as f:
        ref = json.load(f)
    ids = torch.tensor(ref["input_ids"])
    mask = torch.tensor(ref["attention_mask"])
    ours = torch.tensor(ref["logits"]).reshape(ref["shape"])
    wrong_head = torch.tensor(ref["base_head_logits"]).reshape(ref["shape"])

    import peft
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
    torch.manual_seed(0)
    base, failed = load_hf(os.path.join(args.dir, "base"))
    model = PeftModel.from_pretrained(base, os.path.join(args.dir, "adapter"))
    results = {}
    results["peft adapter vs ours"] = (logits_of(model, ids, mask) - ours).abs().max().item()
    merged_by_peft = model.merge_and_unload()
    results["peft merge_and_unload vs ours"] = (
        (logits_of(merged_by_peft, ids, mask) - ours).abs().max().item()
    )
    merged, merged_failed = load_hf(os.path.join(args.dir, "merged"))
    failed |= merged_failed
    results["our merged export (transformers) vs ours"] = (
        (logits_of(merged, ids, mask) - ours).abs().max().item()
    )

    print(f"max |logit| (ours): {ours.abs().max().item():.6f}")
    print(
        "sensitivity: ours with the base's head instead of the adapter's differs by "
        f"{(wrong_head - ours).abs().max().item():.6f}"
    )
    for name, diff in results.items():
        ok = diff <= args.tol
        failed |= not ok
        print(f"{name}: max |diff| = {diff:.3e} {'ok' if ok else 'FAIL'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
