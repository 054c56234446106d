"""The small model zoo shared by the compatibility, training and inference checks.

A CNN, a transformer encoder and a decoder LM, small enough to run in well under a
second on a CPU and built only from GEMMs, convolutions and elementwise ops (attention
is written out, not a fused kernel): every FLOP goes through ops the fault layer and
the reference comparison understand. Weights come from a seeded CPU generator, so the
same model exists bit for bit on every device and in fp64 for references.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)
from torch import nn


@dataclass(frozen=True)
class LMConfig:
    vocab: int = 128
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    seq: int = 32
    mlp_ratio: int = 4

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def params_non_embedding(self) -> int:
        d = self.d_model
        per_layer = 4 * d * d + 4 * d + 2 * self.mlp_ratio * d * d + (self.mlp_ratio + 1) * d + 4 * d
        return self.layers * per_layer + d * self.vocab + self.vocab + 2 * d

    def train_flops_per_token(self) -> float:
        """Forward+backward FLOPs per token: 6N plus attention scores (PaLM, appendix B)."""
        return 6.0 * self.params_non_embedding() + 12.0 * self.layers * self.d_model * self.seq

    def forward_flops_per_token(self) -> float:
        return self.train_flops_per_token() / 3.0


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, heads: int, causal: bool) -> None:
        super().__init__()
        self.heads = heads
        self.causal = causal
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, d_model = x.shape
        head_dim = d_model // self.heads
        q, k, v = self.qkv(x).split(d_model, dim=-1)
        q, k, v = (t.reshape(batch, seq, self.heads, head_dim).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(head_dim)
        if self.causal:
            mask = torch.ones(seq, seq, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(mask, float("-inf"))
        out = scores.softmax(dim=-1) @ v
        projected: torch.Tensor = self.proj(out.transpose(1, 2).reshape(batch, seq, d_model))
        return projected


class Block(nn.Module):
    def __init__(self, d_model: int, heads: int, mlp_ratio: int, causal: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, heads, causal)
        self.norm2 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, mlp_ratio * d_model)
        self.fc2 = nn.Linear(mlp_ratio * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        out: torch.Tensor = x + self.fc2(F.gelu(self.fc1(self.norm2(x))))
        return out


class TinyDecoderLM(nn.Module):
    """A GPT-style decoder: token + position embeddings, causal blocks, LM head."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        self.tokens = nn.Embedding(config.vocab, config.d_model)
        self.positions = nn.Embedding(config.seq, config.d_model)
        self.blocks = nn.ModuleList(Block(config.d_model, config.heads, config.mlp_ratio, True)
                                    for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.tokens(tokens) + self.positions(positions)
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.head(self.norm(x))
        return logits


class TinyEncoder(nn.Module):
    """A bidirectional transformer encoder with a mean-pooled classification head."""

    def __init__(self, vocab: int = 128, d_model: int = 64, heads: int = 4, layers: int = 2,
                 seq: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, d_model)
        self.positions = nn.Embedding(seq, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads, 4, False) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.tokens(tokens) + self.positions(positions)
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.head(self.norm(x).mean(dim=1))
        return logits


class TinyCNN(nn.Module):
    """Two convolutions, pooling and a linear classifier over 3x16x16 images."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.head = nn.Linear(16 * 4 * 4, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(images)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        logits: torch.Tensor = self.head(x.flatten(1))
        return logits


class PrototypeClassifier(nn.Module):
    """An MLP feature map whose classes are the features of fixed prototype inputs.

    Inputs near a prototype are classified as its class with a clear margin, which
    gives the inference accuracy check a stable fp32 answer to agree with, the way a
    trained model does on its validation set.
    """

    def __init__(self, prototypes: torch.Tensor, hidden: int = 128, scale: float = 16.0) -> None:
        super().__init__()
        dim = prototypes.shape[1]
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.scale = scale
        with torch.no_grad():
            features = self.features(prototypes)
        self.head = nn.Linear(hidden, prototypes.shape[0], bias=False)
        with torch.no_grad():
            self.head.weight.copy_(features)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc2(F.gelu(self.fc1(x)))
        return F.normalize(h, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.features(x)) * self.scale
        return logits


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build_lm(config: LMConfig, seed: int) -> TinyDecoderLM:
    """The decoder LM with weights from `seed` (on CPU, fp32)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyDecoderLM(config)


def build_zoo(seed: int) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """Each zoo model (CPU, fp32, eval mode) with a fixed input batch."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cnn = TinyCNN()
        encoder = TinyEncoder()
        decoder = TinyDecoderLM(LMConfig())
        images = torch.randn(4, 3, 16, 16)
        tokens = torch.randint(0, 128, (4, 32))
    return {
        "cnn": (cnn.eval(), images),
        "encoder": (encoder.eval(), tokens),
        "decoder_lm": (decoder.eval(), tokens),
    }


def synthetic_batches(config: LMConfig, batch: int, count: int, seed: int) -> list[torch.Tensor]:
    """Token sequences following a fixed affine rule with noise: learnable within a few steps."""
    generator = seeded(seed)
    batches = []
    for _ in range(count):
        start = torch.randint(0, config.vocab, (batch, 1), generator=generator)
        steps = torch.arange(config.seq + 1).unsqueeze(0)
        sequence = (start * 5 + steps * 3) % config.vocab
        noise = torch.rand(batch, config.seq + 1, generator=generator) < 0.1
        random_tokens = torch.randint(0, config.vocab, (batch, config.seq + 1), generator=generator)
        batches.append(torch.where(noise, random_tokens, sequence))
    return batches
