#!/usr/bin/env python3
"""PyTorch CPU baseline for `cargo xtask bench encoder` (optional; needs `pip install torch`).

Same shapes and protocol as crates/models/benches/encoder.rs: batch 32 x sequence 64, random weights,
dropout off, post-LayerNorm BERT/RoBERTa encoder layers with exact GELU, forward in inference mode and
forward+backward of mean(h^2). Prints `BENCH shape=... mode=... tokens_per_s=...` lines.

Usage: python3 scripts/bench_encoder_torch.py [--shapes minilm,roberta-base] [--iters N] [--batch B] [--seq L]
"""
import argparse
import time

import torch
from torch import nn

SHAPES = {
    # hidden, layers, heads, intermediate, vocab, max_positions
    "minilm": (384, 6, 12, 1536, 30522, 512),
    "roberta-base": (768, 12, 12, 3072, 50265, 514),
}


class Encoder(nn.Module):
    def __init__(self, h, n, heads, inter, vocab, max_pos):
        super().__init__()
        self.word = nn.Embedding(vocab, h)
        self.pos = nn.Embedding(max_pos, h)
        self.norm = nn.LayerNorm(h)
        layer = nn.TransformerEncoderLayer(h, heads, inter, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=False)
        self.layers = nn.TransformerEncoder(layer, n, enable_nested_tensor=False)

    def forward(self, ids, pad_mask):
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        x = self.norm(self.word(ids) + self.pos(positions))
        return self.layers(x, src_key_padding_mask=pad_mask)


def timed(iters, f):
    f()
    start = time.perf_counter()
    for _ in range(iters):
        f()
    return (time.perf_counter() - start) / iters


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shapes", default="minilm,roberta-base")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=64)
    a, _ = p.parse_known_args()
    torch.manual_seed(0)
    tokens = a.batch * a.seq
    print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}")
    for shape in a.shapes.split(","):
        h, n, heads, inter, vocab, max_pos = SHAPES[shape]
        model = Encoder(h, n, heads, inter, vocab, max_pos)
        ids = torch.randint(3, vocab, (a.batch, a.seq))
        pad = torch.zeros(a.batch, a.seq, dtype=torch.bool)
        model.eval()

        def fwd():
            with torch.inference_mode():
                model(ids, pad).sum().item()

        secs = timed(a.iters, fwd)
        print(f"BENCH shape={shape} mode=forward tokens_per_s={tokens / secs:.0f} ms_per_batch={secs * 1e3:.1f}")
        model.train()

        def fwd_bwd():
            model.zero_grad(set_to_none=True)
            model(ids, pad).pow(2).mean().backward()

        secs = timed(a.iters, fwd_bwd)
        print(f"BENCH shape={shape} mode=forward+backward tokens_per_s={tokens / secs:.0f} ms_per_batch={secs * 1e3:.1f}")


if __name__ == "__main__":
    main()
