"""Synthetic speech-like signals in noise, the short-time spectrum the denoiser streams, and SI-SNR.

Clean signal: voiced "syllables" (0.08-0.35 s, gaps 0.03-0.2 s) made of harmonics of a gliding,
vibrating pitch (80-260 Hz) under a three-formant spectral envelope, with smooth attacks and decays.
Noise: coloured (random spectral tilt) and non-stationary (slow random amplitude modulation), plus a
random steady hum tone, mixed at an SNR uniform in [snr_lo, snr_hi] dB. Everything is generated from a
``torch.Generator``, so a seed gives the same test set on every machine.
"""

from __future__ import annotations

import math

import torch

SAMPLE_RATE = 8000
N_FFT = 256          # 32 ms frames
HOP = 128            # one model step every 16 ms
N_BINS = N_FFT // 2 + 1


def _window(device=None) -> torch.Tensor:
    # sqrt-Hann for analysis and synthesis: at 50% overlap the squared windows sum to 1.
    return torch.hann_window(N_FFT, device=device).sqrt()


def _smooth_noise(gen: torch.Generator, batch: int, n: int, points: int) -> torch.Tensor:
    """Smooth random curves in [0, 1]: ``points`` random knots linearly interpolated to ``n`` samples."""
    knots = torch.rand(batch, 1, points, generator=gen)
    return torch.nn.functional.interpolate(knots, size=n, mode="linear", align_corners=True)[:, 0]


def speech_like(gen: torch.Generator, batch: int, n: int) -> torch.Tensor:
    """[batch, n] clean speech-like signals, peak-normalised to 0.5."""
    t = torch.arange(n) / SAMPLE_RATE
    out = torch.zeros(batch, n)
    n_harm = 30
    k = torch.arange(1, n_harm + 1).float()
    for b in range(batch):
        # Syllable on/off envelope: attacks and decays shaped by a half sine.
        env = torch.zeros(n)
        pos = int(torch.randint(0, int(0.15 * SAMPLE_RATE), (1,), generator=gen))
        while pos < n:
            length = int((0.08 + 0.27 * torch.rand(1, generator=gen)).item() * SAMPLE_RATE)
            end = min(n, pos + length)
            env[pos:end] = torch.sin(math.pi * torch.arange(end - pos) / max(length, 1)) ** 0.5
            pos = end + int((0.03 + 0.17 * torch.rand(1, generator=gen)).item() * SAMPLE_RATE)
        # Pitch: a base in 80-260 Hz, a slow glide of +-20% and a 5 Hz vibrato.
        f_base = 80 + 180 * torch.rand(1, generator=gen)
        glide = 1 + 0.4 * (_smooth_noise(gen, 1, n, 6)[0] - 0.5)
        vib = 1 + 0.015 * torch.sin(2 * math.pi * 5 * t + 6.28 * torch.rand(1, generator=gen))
        f0 = f_base * glide * vib
        phase0 = 2 * math.pi * torch.cumsum(f0, 0) / SAMPLE_RATE
        # Formants: three resonances whose centres drift over the utterance.
        centres = torch.tensor([500.0, 1500.0, 2500.0]) * (0.8 + 0.4 * torch.rand(3, generator=gen))
        drift = 1 + 0.3 * (_smooth_noise(gen, 3, n, 8) - 0.5)  # [3, n]
        widths = torch.tensor([120.0, 200.0, 300.0])
        freqs = k[:, None] * f0[None, :]  # [K, n]
        gain = torch.zeros_like(freqs)
        for c in range(3):
            gain += torch.exp(-0.5 * ((freqs - centres[c] * drift[c]) / widths[c]) ** 2) / (c + 1)
        gain = (gain + 0.02) / k[:, None] * (freqs < 0.45 * SAMPLE_RATE)
        voiced = (gain * torch.sin(k[:, None] * phase0[None, :])).sum(0)
        out[b] = voiced * env
    return 0.5 * out / out.abs().amax(dim=1, keepdim=True).clamp_min(1e-6)


def noise_like(gen: torch.Generator, batch: int, n: int) -> torch.Tensor:
    """[batch, n] coloured, amplitude-modulated noise with a hum tone, unit RMS."""
    white = torch.randn(batch, n, generator=gen)
    spec = torch.fft.rfft(white)
    f = torch.linspace(1.0 / spec.shape[1], 1.0, spec.shape[1])
    tilt = -1.5 + 2.0 * torch.rand(batch, 1, generator=gen)  # slopes from brown-ish to blue-ish
    coloured = torch.fft.irfft(spec * f[None, :] ** (tilt / 2), n=n)
    am = 0.4 + 0.6 * _smooth_noise(gen, batch, n, max(2, n // 2000))
    t = torch.arange(n) / SAMPLE_RATE
    hum_f = 50 + 250 * torch.rand(batch, 1, generator=gen)
    hum = 0.5 * torch.rand(batch, 1, generator=gen) * torch.sin(2 * math.pi * hum_f * t)
    noise = coloured / coloured.std(dim=1, keepdim=True) * am + hum
    return noise / noise.pow(2).mean(dim=1, keepdim=True).sqrt()


def mixtures(gen: torch.Generator, batch: int, seconds: float, snr_lo: float = -5.0,
             snr_hi: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy, clean), each [batch, n], at SNRs uniform in [snr_lo, snr_hi] dB."""
    n = int(seconds * SAMPLE_RATE)
    clean = speech_like(gen, batch, n)
    noise = noise_like(gen, batch, n)
    snr = snr_lo + (snr_hi - snr_lo) * torch.rand(batch, 1, generator=gen)
    p_clean = clean.pow(2).mean(dim=1, keepdim=True)
    noise = noise * torch.sqrt(p_clean / 10 ** (snr / 10))
    return clean + noise, clean


def stft(wave: torch.Tensor) -> torch.Tensor:
    """[B, n] -> complex [B, frames, bins]. Not centred: frame t needs samples up to t*HOP + N_FFT only,
    so a stream can emit it as soon as they arrive."""
    spec = torch.stft(wave, N_FFT, HOP, window=_window(wave.device), center=False, return_complex=True)
    return spec.transpose(1, 2)


def istft(spec: torch.Tensor, length: int) -> torch.Tensor:
    """Inverse of :func:`stft`: weighted overlap-add, also causal (``torch.istft`` rejects
    ``center=False`` with a window that is 0 at the first sample)."""
    win = _window(spec.device)
    frames = torch.fft.irfft(spec, n=N_FFT) * win  # [B, F, N_FFT]
    n_frames = frames.shape[1]
    total = (n_frames - 1) * HOP + N_FFT
    fold = lambda f: torch.nn.functional.fold(f.transpose(1, 2), (1, total), (1, N_FFT), stride=(1, HOP))  # noqa: E731
    wave = fold(frames)[:, 0, 0]
    envelope = fold((win ** 2).expand(1, n_frames, N_FFT))[:, 0, 0]
    wave = wave / envelope.clamp_min(1e-3)
    return torch.nn.functional.pad(wave, (0, max(0, length - total)))[:, :length]


def features(spec: torch.Tensor) -> torch.Tensor:
    """Log-magnitude features [B, frames, bins] from a complex spectrum."""
    return torch.log(spec.abs() ** 2 + 1e-4)


def si_snr(estimate: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant signal-to-noise ratio in dB, per row of [B, n]."""
    estimate = estimate - estimate.mean(dim=-1, keepdim=True)
    target = target - target.mean(dim=-1, keepdim=True)
    scale = (estimate * target).sum(-1, keepdim=True) / (target.pow(2).sum(-1, keepdim=True) + eps)
    projection = scale * target
    residual = estimate - projection
    return 10 * torch.log10(projection.pow(2).sum(-1) / (residual.pow(2).sum(-1) + eps) + eps)
