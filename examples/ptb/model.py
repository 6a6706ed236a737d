"""Embedding -> EGRU stack -> decoder tied to the embedding: the PTB language model."""

from __future__ import annotations

import torch
from torch import nn

from evsparse import prune
from evsparse.nn import EGRU, SparseLinear

CONFIGS = {
    # Trains on 2 CPU cores in under an hour (see README for the recorded run).
    "small": dict(emb=256, hidden=[384, 256], dropout=0.3, dropconnect=0.3, thr_mean=0.05),
    # For the pipeline's test only.
    "tiny": dict(emb=16, hidden=[24, 16], dropout=0.1, dropconnect=0.1, thr_mean=0.05),
    # The paper-scale model (EvNN's PTB recipe: 3 layers 1350/1350/750, embedding 750, tied); for a GPU.
    "paper": dict(emb=750, hidden=[1350, 1350, 750], dropout=0.4, dropconnect=0.7, thr_mean=0.3),
}


class EGRULanguageModel(nn.Module):
    def __init__(self, vocab: int, emb: int, hidden: list[int], dropout: float = 0.0, dropconnect: float = 0.0,
                 thr_mean: float = 0.3):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        sizes = [emb] + list(hidden)
        self.layers = nn.ModuleList(
            EGRU(sizes[k], sizes[k + 1], dropconnect=dropconnect, thr_mean=thr_mean) for k in range(len(hidden)))
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(emb, vocab)
        if hidden[-1] != emb:
            raise ValueError("the last hidden size must equal the embedding size (tied decoder)")
        self.decoder.weight = self.embedding.weight
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def init_state(self):
        return [None] * len(self.layers)

    def forward(self, tokens: torch.Tensor, state=None):
        state = state or self.init_state()
        x = self.drop(self.embedding(tokens))
        new_state = []
        for layer, s in zip(self.layers, state):
            x, s = layer(x, s)
            x = self.drop(x)
            new_state.append(s)
        return self.decoder(x), new_state

    def activity(self) -> list[float]:
        return [layer.activity()[0] for layer in self.layers]

    def activity_loss(self) -> torch.Tensor:
        return sum(layer.activity_loss() for layer in self.layers)

    @torch.no_grad()
    def sparsify(self, masks: dict | None = None, layout="auto",
                 example_tokens: torch.Tensor | None = None, weight_dtype=None) -> "SparseLanguageModel":
        """The model on the kernels. ``layout`` as for ``EGRU.sparsify`` (one name, or per layer the
        pairs ``.layouts`` reports); ``"timed"`` times each layer on its input for ``example_tokens``
        ([T] or [T, B] token ids): the embeddings, then each dense layer's output in turn. The decoder
        goes on the gather kernel too: its input is the top layer's event output, mostly exact zeros.
        ``weight_dtype``: the packed weights' dtype (e.g. ``torch.int8``; default float32)."""
        masks = masks or {}
        x = None if example_tokens is None else self.embedding(example_tokens)
        layers = []
        for k, layer in enumerate(self.layers):
            layer_layout = layout if isinstance(layout, str) else [layout[k]]
            layers.append(layer.sparsify(prune.masks_for(layer, masks, f"layers.{k}."), layer_layout, x,
                                         weight_dtype=weight_dtype))
            if x is not None and k + 1 < len(self.layers):
                was_training = layer.training
                x = layer.eval()(x)[0]  # the next layer's input as inference sees it (no dropconnect)
                layer.train(was_training)
        return SparseLanguageModel(self.embedding, layers,
                                   SparseLinear.from_module(self.decoder, weight_dtype=weight_dtype))


class SparseLanguageModel(nn.Module):
    """Inference on the kernels: PackedEGRU layers and a SparseLinear decoder (its weight the tied
    embedding's, packed input-major: only the rows of firing units are read); the embedding is the
    dense model's."""

    def __init__(self, embedding: nn.Embedding, layers: list, decoder: SparseLinear):
        super().__init__()
        self.embedding, self.layers, self.decoder = embedding, nn.ModuleList(layers), decoder

    def init_state(self):
        return [None] * len(self.layers)

    def forward(self, tokens: torch.Tensor, state=None):
        state = state or self.init_state()
        x = self.embedding(tokens)
        new_state = []
        for layer, s in zip(self.layers, state):
            x, s = layer(x, s)
            new_state.append(s)
        return self.decoder(x), new_state

    def activity(self) -> list[float]:
        return [layer.activity()[0] for layer in self.layers]

    @property
    def layouts(self) -> list[tuple[str, str]]:
        """Per layer, the (input, recurrent) weight layouts: ``sparsify(layout=...)`` takes this list."""
        return [layer.layouts[0] for layer in self.layers]


def build(vocab: int, config: str | dict) -> EGRULanguageModel:
    cfg = CONFIGS[config] if isinstance(config, str) else config
    return EGRULanguageModel(vocab, **cfg)
