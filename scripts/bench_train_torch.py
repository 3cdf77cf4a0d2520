#!/usr/bin/env python3
"""PyTorch CPU baseline of the three ConvAI2 training steps (optional; needs torch and transformers).

The protocol of the authors' convai/ code (jacob-block/peft-ml), written out independently: a BERT
(MiniLM) or RoBERTa sequence classifier with 2 labels scores every (context, candidate) pair of a batch
of C contexts x K candidates x L tokens, the loss is the 2-way cross-entropy of every pair (gold = 1),
and one AdamW step follows each batch. The three steps:

- `train-sr`: standard retraining, every weight trainable, one head.
- `train-lora-ml`: LoRA-ML retraining, the base plus T per-task LoRA adapters (rank r, alpha 2r,
  dropout 0.1) on all six encoder linears (query, key, value, attention output, intermediate, output)
  and T per-task heads, as the authors' `AdapterLinear`/`MultiHeadClassifier`; each step trains the
  base, one task's adapters and its head (the task cycles).
- `train-lora-ft`: LoRA fine-tuning, the base frozen, one fresh adapter on the same six linears and a
  fresh head trainable.

Weights come from `--model DIR` (a Hugging Face directory; default models/minilm) or are random with
MiniLM's shape when it is absent. Dropout is on (training mode) as in the real runs. Prints
`BENCH shape=... mode=... tokens_per_s=... ms_per_batch=...` lines (median over --iters timed steps
after --warmup), and the peak resident memory of the process.

Usage: python3 scripts/bench_train_torch.py [--modes train-sr,train-lora-ml,train-lora-ft]
           [--contexts 8] [--candidates 20] [--seq 64] [--iters 20] [--warmup 3] [--tasks 10] [--rank 8]
           [--lora-dropout 0.1] [--interleave] [--padded]
"""
import argparse
import math
import os
import resource
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

TARGETS = ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")


class TaskLoraLinear(nn.Module):
    """A frozen-or-trainable linear layer plus one LoRA adapter per task; `task` picks the active one."""

    def __init__(self, base: nn.Linear, rank: int, tasks: int, alpha: float, dropout: float):
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.dropout = nn.Dropout(dropout)
        self.down = nn.ModuleList(nn.Linear(base.in_features, rank, bias=False) for _ in range(tasks))
        self.up = nn.ModuleList(nn.Linear(rank, base.out_features, bias=False) for _ in range(tasks))
        for up in self.up:
            nn.init.zeros_(up.weight)
        self.task = 0

    def forward(self, x):
        t = self.task
        return self.base(x) + self.up[t](self.down[t](self.dropout(x))) * self.scale


def adapt(model, rank, tasks, dropout):
    """Wraps the six encoder linears of every layer; returns the wrappers."""
    wrappers = []
    for layer in model.base_model.encoder.layer:
        for path in TARGETS:
            parent = layer
            *parents, leaf = path.split(".")
            if path in ("query", "key", "value"):
                parent = layer.attention.self
            else:
                for name in parents:
                    parent = getattr(parent, name)
            wrapper = TaskLoraLinear(getattr(parent, leaf), rank, tasks, 2.0 * rank, dropout)
            setattr(parent, leaf, wrapper)
            wrappers.append(wrapper)
    return wrappers


def load(args):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if os.path.isfile(os.path.join(args.model, "model.safetensors")):
        return AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2), "minilm"
    config = AutoConfig.for_model("bert", hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                  intermediate_size=1536, num_labels=2)
    return AutoModelForSequenceClassification.from_config(config), "minilm-random"


def step_fn(mode, args):
    torch.manual_seed(0)
    model, shape = load(args)
    model.train()
    tasks = args.tasks if mode == "train-lora-ml" else 1
    heads = None
    if mode in ("train-lora-ml", "train-lora-ft"):
        wrappers = adapt(model, args.rank, tasks, args.lora_dropout)
    if mode == "train-lora-ml":
        # One head per task, as the authors' MultiHeadClassifier.
        import copy

        heads = nn.ModuleList(copy.deepcopy(model.classifier) for _ in range(tasks))
    if mode == "train-lora-ft":
        for name, p in model.named_parameters():
            p.requires_grad_(".down." in name or ".up." in name or "classifier" in name)
    params = [p for p in model.parameters() if p.requires_grad]
    if heads is not None:
        params += list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    rows = args.contexts * args.candidates
    ids = torch.randint(1000, 30000, (rows, args.seq))
    mask = torch.ones(rows, args.seq, dtype=torch.long)
    if args.padded:
        # Row r keeps seq/2 + r mod (seq/2 + 1) tokens and is padded after them, as in the Rust bench.
        for r in range(rows):
            length = args.seq // 2 + r % (args.seq // 2 + 1)
            mask[r, length:] = 0
            ids[r, length:] = 0
    labels = torch.zeros(rows, dtype=torch.long)
    labels[:: args.candidates] = 1
    counter = [0]

    def step():
        t = counter[0] % tasks
        counter[0] += 1
        if heads is not None:
            for w in wrappers:
                w.task = t
            model.classifier = heads[t]
        logits = model(input_ids=ids, attention_mask=mask).logits
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, shape


def time_rounds(steps, warmup, iters):
    """Runs warmup + iters rounds of one call of each step; each step's times in the timed rounds."""
    times = [[] for _ in steps]
    for i in range(warmup + iters):
        for step, ts in zip(steps, times):
            start = time.perf_counter()
            step()
            if i >= warmup:
                ts.append(time.perf_counter() - start)
    return times


def report(mode, shape, times, tokens):
    secs = statistics.median(times)
    print(f"BENCH shape={shape} mode={mode} tokens_per_s={tokens / secs:.0f} "
          f"ms_per_batch={secs * 1e3:.1f}")


# Two-sided 97.5 % quantiles of Student's t for 1..30 degrees of freedom; 1.96 beyond.
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042]


def print_ratio(mode, first, ratios):
    """The geometric mean of per-round step-time ratios with a 95 % t interval on their logs."""
    logs = [math.log(r) for r in ratios]
    n = len(logs)
    mean = statistics.fmean(logs)
    half = 0.0
    if n > 1:
        t = T975[n - 2] if n - 1 <= len(T975) else 1.96
        half = t * statistics.stdev(logs) / math.sqrt(n)
    print(f"RATIO {mode} / {first} = {math.exp(mean):.3f} (95 % CI {math.exp(mean - half):.3f}"
          f"\u2013{math.exp(mean + half):.3f}; rounds {min(ratios):.3f}\u2013{max(ratios):.3f}; n = {n})")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--modes", default="train-sr,train-lora-ml,train-lora-ft")
    p.add_argument("--model", default="models/minilm")
    p.add_argument("--contexts", type=int, default=8)
    p.add_argument("--candidates", type=int, default=20)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--tasks", type=int, default=10)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--lora-dropout", type=float, default=0.1)
    p.add_argument("--padded", action="store_true",
                   help="rows of seq/2 to seq real tokens, padded to seq")
    p.add_argument("--interleave", action="store_true",
                   help="hold every mode's model at once and run one step of each in turn; "
                        "prints each mode's per-round step-time ratio to the first mode's")
    a, _ = p.parse_known_args()
    tokens = a.contexts * a.candidates * a.seq
    print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{a.contexts} contexts x {a.candidates} candidates x {a.seq} tokens")
    modes = a.modes.split(",")
    if a.interleave:
        # Every mode's model at once, one step of each in turn: the per-round ratios do not carry
        # the host's drift between rounds.
        built = [step_fn(mode, a) for mode in modes]
        times = time_rounds([step for step, _ in built], a.warmup, a.iters)
        for mode, (_, shape), ts in zip(modes, built, times):
            report(mode, shape, ts, tokens)
        for mode, ts in zip(modes[1:], times[1:]):
            print_ratio(mode, modes[0], [b / f for f, b in zip(times[0], ts)])
    else:
        for mode in modes:
            step, shape = step_fn(mode, a)
            [ts] = time_rounds([step], a.warmup, a.iters)
            report(mode, shape, ts, tokens)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"# peak resident memory of the process: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
