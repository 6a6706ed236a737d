"""The N-DNS denoiser of Pierro et al. (2025) on evsparse's S5 family: 16 kHz, rectangular 512-sample
frames every 128 samples (one model step per 8 ms), 257 magnitude bins -> ``evsparse.nn.S5Stack`` -> a
mask; cleaned magnitude = noisy magnitude x (1 + mask), the noisy phase, overlap-add. Loss: 0.001 MSE of the
magnitudes + (100 - SI-SNR)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from evsparse.nn import S5Stack
from evsparse.nn.s5 import width_scale

N_FFT, HOP = 512, 128
BINS = N_FFT // 2 + 1
MAG_OFFSET = 0.0007  # the reference subtracts it from the magnitudes


def stft(x: torch.Tensor) -> torch.Tensor:
    """[B, n] -> complex [B, T, 257]: causal frames (frame t is samples 128 t .. 128 t + 511), no window."""
    return torch.fft.rfft(x.unfold(-1, N_FFT, HOP), dim=-1)


def istft(spec: torch.Tensor, n: int) -> torch.Tensor:
    """Overlap-add inverse of :func:`stft` (each sample averaged over the frames that hold it)."""
    frames = torch.fft.irfft(spec, N_FFT, dim=-1)  # [B, T, 512]
    T = frames.shape[1]
    length = (T - 1) * HOP + N_FFT
    fold = lambda f: F.fold(f.transpose(1, 2), (1, length), (1, N_FFT), stride=(1, HOP))[:, 0, 0]  # noqa: E731
    out = fold(frames) / fold(torch.ones_like(frames[:1]))
    return F.pad(out, (0, max(0, n - length)))[:, :n]


def si_snr(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SNR in dB per row of [B, n] (zero-mean signals)."""
    est = est - est.mean(-1, keepdim=True)
    ref = ref - ref.mean(-1, keepdim=True)
    target = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps) * ref
    return 10 * torch.log10(target.pow(2).sum(-1) / ((est - target).pow(2).sum(-1) + eps) + eps)


class Denoiser(nn.Module):
    """``Denoiser(k, relufied)``: the paper's model at width scale ``k``; ``relufied`` for the sparse
    family (ReLU everywhere), False for the dense one (GELU)."""

    def __init__(self, k: float = 1.0, relufied: bool = True, num_layers: int = 3, dropout: float = 0.1):
        super().__init__()
        self.k, self.relufied = k, relufied
        self.net = S5Stack(BINS, num_layers=num_layers, output_size=BINS, relufied=relufied, dropout=dropout,
                           batch_first=True, **width_scale(k))

    @staticmethod
    def features(noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(complex spectrum, the model's input features): the same for every model."""
        spec = stft(noisy)
        return spec, spec.abs() - MAG_OFFSET

    def forward(self, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, n] noisy waveform -> (cleaned waveform [B, n], cleaned magnitude [B, T, 257])."""
        spec, feats = self.features(noisy)
        mask, _ = self.net(feats)
        return self.resynthesise(spec, mask, noisy.shape[-1])

    @staticmethod
    def resynthesise(spec: torch.Tensor, mask: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        mag = spec.abs() * (1 + mask)
        return istft(mag * torch.exp(1j * spec.angle()), n), mag


def loss(model: Denoiser, noisy: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's loss; returns (loss, SI-SNR per clip)."""
    wave, mag = model(noisy)
    target = stft(clean).abs()
    s = si_snr(wave, clean)
    return 0.001 * F.mse_loss(mag, target) + (100 - s.mean()), s.detach()
