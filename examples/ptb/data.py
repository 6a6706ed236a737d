"""Word-level Penn Treebank (Mikolov's split): vocabulary from the training file, <eos> at each line end."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def data_dir(path: str | None) -> Path:
    """The PTB folder: the argument, else $EVSPARSE_DATA/ptb."""
    if path:
        return Path(path)
    root = os.environ.get("EVSPARSE_DATA")
    if not root:
        raise SystemExit("give --data PATH/TO/ptb or set EVSPARSE_DATA (the folder holding ptb/)")
    return Path(root) / "ptb"


class Corpus:
    def __init__(self, path: str | Path):
        path = Path(path)
        self.itos: list[str] = []
        self.stoi: dict[str, int] = {}
        self.train = self._tokenize(path / "ptb.train.txt", grow=True)
        self.valid = self._tokenize(path / "ptb.valid.txt")
        self.test = self._tokenize(path / "ptb.test.txt")

    def _tokenize(self, file: Path, grow: bool = False) -> torch.Tensor:
        ids = []
        with open(file, encoding="utf-8") as f:
            for line in f:
                for word in line.split() + ["<eos>"]:
                    if word not in self.stoi:
                        if not grow:
                            raise ValueError(f"{file}: word {word!r} is not in the training vocabulary")
                        self.stoi[word] = len(self.itos)
                        self.itos.append(word)
                    ids.append(self.stoi[word])
        return torch.tensor(ids, dtype=torch.long)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)


def batchify(data: torch.Tensor, batch_size: int) -> torch.Tensor:
    """[N] -> [N // B, B]: B parallel streams, each contiguous text."""
    n = data.numel() // batch_size
    return data[: n * batch_size].view(batch_size, n).t().contiguous()


def batches(source: torch.Tensor, bptt: int, start: int = 0):
    """Yields (index, inputs [T, B], targets [T, B]) windows for truncated BPTT."""
    for i in range(start, source.shape[0] - 1, bptt):
        T = min(bptt, source.shape[0] - 1 - i)
        yield i, source[i : i + T], source[i + 1 : i + 1 + T]
