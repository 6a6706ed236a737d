"""Real (synthesised) speech in noise at 16 kHz, generated reproducibly on this machine.

Speech: Debian's ``flite`` voices (awb, kal16, rms, slt: diphone and clustergen voices built from recorded
speakers) and ``espeak-ng``'s English voices with its voice variants (formant synthesis), at several speeds and
pitches, speaking Penn Treebank sentences (train texts from ``ptb.train.txt``, test texts from
``ptb.test.txt``). The test speakers and test texts are held out: no test voice and no test sentence is
seen in training. Nothing is downloaded; the synthesisers run locally and their output is cached.

Noise, mixed at an SNR uniform in [-5, 20] dB and a mixture level uniform in [-35, -15] dBFS (the N-DNS
challenge's ranges), one or two of:

* coloured: Gaussian noise with a spectral slope ``f^-alpha``, alpha in [-0.5, 2] (blue to brown), slowly
  amplitude-modulated;
* babble: 3-7 other utterances (other speakers of the same split) summed;
* transient: decaying noise bursts (knocks, slams), clicks (keys) and short tones (beeps) at random times;
* hum: 50 or 60 Hz mains hum with harmonics.

Every draw comes from a ``numpy.random.Generator`` seeded by the caller, so a seed gives the same data on
every machine with the same synthesiser versions (tested).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

SAMPLE_RATE = 16000
SNR_DB = (-5.0, 20.0)
LEVEL_DBFS = (-35.0, -15.0)


@dataclass(frozen=True)
class Speaker:
    engine: str  # "flite" or "espeak-ng"
    voice: str  # flite voice, or espeak-ng voice[+variant]
    speed: int = 0  # espeak-ng words per minute (0: the default)
    pitch: int = 50  # espeak-ng pitch 0..99

    @property
    def name(self) -> str:
        return f"{self.engine}:{self.voice}" + (f"@{self.speed}wpm,p{self.pitch}" if self.engine == "espeak-ng" else "")


def _espeak(voice: str, speed: int, pitch: int) -> Speaker:
    return Speaker("espeak-ng", voice, speed, pitch)


# Held out: one flite voice and three espeak-ng voice/variant pairs that training never hears.
TEST_SPEAKERS = (
    Speaker("flite", "slt"),
    _espeak("en-gb-x-rp+f2", 160, 60),
    _espeak("en-us-nyc+m4", 175, 40),
    _espeak("en-029+f4", 150, 70),
)
_TRAIN_ESPEAK = [("en-us", "m1"), ("en-us", "f1"), ("en-gb", "m3"), ("en-gb", "f3"), ("en-gb-scotland", "m2"),
                 ("en-gb-scotland", "f5"), ("en-gb-x-gbclan", "m5"), ("en-gb-x-gbcwmd", "f1"), ("en-us", "m7"),
                 ("en-029", "m6"), ("en-gb-x-rp", "m2"), ("en-us-nyc", "f3")]
TRAIN_SPEAKERS = (Speaker("flite", "awb"), Speaker("flite", "kal16"), Speaker("flite", "rms")) + tuple(
    _espeak(f"{v}+{var}", 140 + 10 * (i % 5), 30 + 7 * (i % 7)) for i, (v, var) in enumerate(_TRAIN_ESPEAK))


def available() -> Optional[str]:
    """None when both synthesisers are installed, else what is missing (install: apt-get install flite
    espeak-ng)."""
    missing = [b for b in ("flite", "espeak-ng") if shutil.which(b) is None]
    return None if not missing else f"missing {' and '.join(missing)} (apt-get install flite espeak-ng)"


def ptb_sentences(path: Path, count: int, seed: int, min_words: int = 6, max_words: int = 24) -> list[str]:
    """``count`` sentences of ``min_words``..``max_words`` words from a PTB text file, drawn with ``seed``,
    written as speech: ``<unk>`` and ``$`` dropped, ``N`` (PTB's number token) read as a number from the
    sentence's own seeded draw, ``n't``/``'s`` joined."""
    lines = []
    numbers = np.random.default_rng(seed + 7).integers(2, 2000, 64)
    for line in Path(path).read_text().splitlines():
        words = [w for w in line.split() if w not in ("<unk>", "$")]
        words = [str(numbers[(i + len(lines)) % 64]) if w == "N" else w for i, w in enumerate(words)]
        if min_words <= len(words) <= max_words:
            lines.append(" ".join(words).replace(" n't", "n't").replace(" 's", "'s").replace(" '", "'"))
    if len(lines) < count:
        raise ValueError(f"{path}: only {len(lines)} sentences of {min_words}-{max_words} words, asked for {count}")
    idx = np.random.default_rng(seed).choice(len(lines), count, replace=False)
    return [lines[i] for i in sorted(idx)]


def _read_wav(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError("synthesiser output is not 16-bit mono")
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768, w.getframerate()


def synthesize(speaker: Speaker, text: str, cache: Optional[Path] = None) -> np.ndarray:
    """``text`` spoken by ``speaker``: float32 at 16 kHz, peak-normalised to 0.5. Cached in ``cache`` (a
    directory) by a hash of the speaker and text."""
    key = hashlib.sha1(f"{speaker.name}|{text}".encode()).hexdigest()[:20]
    if cache is not None:
        f = Path(cache) / f"{key}.npy"
        if f.exists():
            return np.load(f)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "x.wav"
        if speaker.engine == "flite":
            cmd = ["flite", "-voice", speaker.voice, "-t", text, "-o", str(out)]
        elif speaker.engine == "espeak-ng":
            cmd = ["espeak-ng", "-v", speaker.voice, "-p", str(speaker.pitch), "-w", str(out)]
            cmd += ["-s", str(speaker.speed)] if speaker.speed else []
            cmd += [text]
        else:
            raise ValueError(f"unknown engine {speaker.engine!r}")

        def run() -> bytes:
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            return out.read_bytes()

        # espeak-ng 1.51 draws its breath noise from rand(); twice in many suite runs (on two machines) one
        # utterance of a breath variant came out different (by up to 0.033 after normalising), never when
        # run by hand (150 runs). So its output counts only once two runs agree: the corpus stays the same
        # for a seed.
        x, rate = _read_wav(agreed(run) if speaker.engine == "espeak-ng" else run())
    if rate != SAMPLE_RATE:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(SAMPLE_RATE, rate)
        x = resample_poly(x, SAMPLE_RATE // g, rate // g).astype(np.float32)
    x = _trim(x)
    x = (0.5 * x / max(float(np.abs(x).max()), 1e-6)).astype(np.float32)
    if cache is not None:
        Path(cache).mkdir(parents=True, exist_ok=True)
        np.save(Path(cache) / f"{key}.npy", x)
    return x


def agreed(run, tries: int = 5) -> bytes:
    """The first result of ``run()`` that two calls returned; ``RuntimeError`` if ``tries`` calls give
    no repeat."""
    seen = []
    for _ in range(tries):
        r = run()
        if r in seen:
            return r
        seen.append(r)
    raise RuntimeError(f"the synthesiser gave {tries} different outputs for one utterance")


def _trim(x: np.ndarray, threshold: float = 1e-3) -> np.ndarray:
    """Drops leading and trailing silence (keeping 50 ms) so crops land on speech."""
    nz = np.flatnonzero(np.abs(x) > threshold)
    if nz.size == 0:
        return x
    pad = SAMPLE_RATE // 20
    return x[max(0, nz[0] - pad):nz[-1] + pad]


# ---------------------------------------------------------------------------------------------- noise

def coloured(rng: np.random.Generator, n: int) -> np.ndarray:
    alpha = rng.uniform(-0.5, 2.0)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 20.0)
    x = np.fft.irfft(spec * f ** (-alpha / 2), n)
    knots = rng.uniform(0.3, 1.0, 2 + n // SAMPLE_RATE)  # slow amplitude modulation, a knot per second
    return x * np.interp(np.arange(n), np.linspace(0, n, knots.size), knots)


def babble(rng: np.random.Generator, n: int, pool: Sequence[np.ndarray]) -> np.ndarray:
    out = np.zeros(n)
    for _ in range(int(rng.integers(3, 8))):
        u = pool[int(rng.integers(len(pool)))]
        reps = np.tile(u, 1 + n // len(u) + 1)
        start = int(rng.integers(len(u)))
        out += reps[start:start + n] * rng.uniform(0.5, 1.0)
    return out


def transient(rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.zeros(n)
    events = max(1, int(rng.poisson(rng.uniform(0.5, 5.0) * n / SAMPLE_RATE)))
    for _ in range(events):
        kind = int(rng.integers(3))
        at = int(rng.integers(n))
        if kind == 0:  # knock/slam: a decaying low-passed burst
            m = int(rng.uniform(0.03, 0.3) * SAMPLE_RATE)
            burst = np.convolve(rng.standard_normal(m), np.ones(int(rng.integers(1, 12))), "same")
            ev = burst * np.exp(-np.arange(m) / (m / rng.uniform(3, 8)))
        elif kind == 1:  # click
            m = int(rng.integers(16, 160))
            ev = rng.standard_normal(m) * np.exp(-np.arange(m) / (m / 4))
        else:  # beep
            m = int(rng.uniform(0.05, 0.4) * SAMPLE_RATE)
            ev = np.sin(2 * np.pi * rng.uniform(400, 3000) * np.arange(m) / SAMPLE_RATE) * np.hanning(m)
        seg = ev[:n - at] * rng.uniform(0.2, 1.0)
        out[at:at + seg.size] += seg
    return out


def hum(rng: np.random.Generator, n: int) -> np.ndarray:
    f0 = 50.0 if rng.random() < 0.5 else 60.0
    t = np.arange(n) / SAMPLE_RATE
    return sum(rng.uniform(0.1, 1.0) / h * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi))
               for h in range(1, 6))


NOISES = ("coloured", "babble", "transient", "hum")


def noise(rng: np.random.Generator, n: int, pool: Sequence[np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """One or two noise kinds summed at random relative levels; returns the noise and the kinds."""
    kinds = [str(k) for k in rng.choice(NOISES, size=int(rng.integers(1, 3)), replace=False)]
    out = np.zeros(n)
    for k in kinds:
        x = {"coloured": lambda: coloured(rng, n), "babble": lambda: babble(rng, n, pool),
             "transient": lambda: transient(rng, n), "hum": lambda: hum(rng, n)}[k]()
        out += x / max(float(np.sqrt(np.mean(x ** 2))), 1e-9) * rng.uniform(0.3, 1.0)
    return out, kinds


def mix(rng: np.random.Generator, clean: np.ndarray, noise_: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(noisy, clean) float32 scaled together to a mixture level in LEVEL_DBFS, at an SNR drawn from SNR_DB."""
    snr = rng.uniform(*SNR_DB)
    p_s = max(float(np.mean(clean ** 2)), 1e-12)
    p_n = max(float(np.mean(noise_ ** 2)), 1e-12)
    noise_ = noise_ * np.sqrt(p_s / p_n / 10 ** (snr / 10))
    noisy = clean + noise_
    gain = 10 ** (rng.uniform(*LEVEL_DBFS) / 20) / max(float(np.sqrt(np.mean(noisy ** 2))), 1e-9)
    gain = min(gain, 0.99 / max(float(np.abs(noisy).max()), 1e-9))  # never clip
    return (noisy * gain).astype(np.float32), (clean * gain).astype(np.float32), snr


# --------------------------------------------------------------------------------------------- corpus

class Corpus:
    """The utterances of one split: ``speakers`` x ``per_speaker`` texts (each text spoken once), plus a
    babble pool of the same speakers on other texts. ``split``: "train" (PTB train texts) or "test" (PTB
    test texts, held-out speakers)."""

    def __init__(self, split: str, ptb_dir: Path, per_speaker: int, seed: int, cache: Optional[Path] = None,
                 speakers: Optional[Sequence[Speaker]] = None, babble_per_speaker: int = 2):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        why = available()
        if why:
            raise RuntimeError(f"speech: {why}")
        self.split = split
        self.speakers = tuple(speakers or (TRAIN_SPEAKERS if split == "train" else TEST_SPEAKERS))
        n = len(self.speakers) * (per_speaker + babble_per_speaker)
        texts = ptb_sentences(Path(ptb_dir) / f"ptb.{split}.txt", n, seed)
        order = np.random.default_rng(seed + 1).permutation(n)
        texts = [texts[i] for i in order]
        self.utterances, self.babble_pool, self.labels = [], [], []
        it = iter(texts)
        for spk in self.speakers:
            for _ in range(per_speaker):
                text = next(it)
                self.utterances.append(synthesize(spk, text, cache))
                self.labels.append((spk.name, text))
            for _ in range(babble_per_speaker):
                self.babble_pool.append(synthesize(spk, next(it), cache))

    @property
    def seconds(self) -> float:
        return sum(len(u) for u in self.utterances) / SAMPLE_RATE

    def mixture(self, rng: np.random.Generator, samples: int, index: Optional[int] = None) -> dict:
        """One (noisy, clean) pair of ``samples`` samples: an utterance (``index`` or a random one) cropped
        at a random offset (zero-padded if short), in noise."""
        i = int(rng.integers(len(self.utterances))) if index is None else index
        u = self.utterances[i]
        if len(u) > samples:
            start = int(rng.integers(len(u) - samples + 1))
            clean = u[start:start + samples].astype(np.float64)
        else:
            clean = np.zeros(samples)
            clean[:len(u)] = u
        n, kinds = noise(rng, samples, self.babble_pool)
        noisy, clean, snr = mix(rng, clean, n)
        return {"noisy": noisy, "clean": clean, "snr_dB": snr, "noise": kinds, "utterance": i}

    def batch(self, rng: np.random.Generator, batch: int, samples: int) -> tuple[np.ndarray, np.ndarray]:
        """[batch, samples] noisy and clean arrays of fresh random mixtures."""
        ms = [self.mixture(rng, samples) for _ in range(batch)]
        return np.stack([m["noisy"] for m in ms]), np.stack([m["clean"] for m in ms])

    def test_set(self, seed: int, samples: int) -> list[dict]:
        """Every utterance once, each in its own seeded noise: the fixed evaluation set."""
        rng = np.random.default_rng(seed)
        return [self.mixture(rng, samples, i) for i in range(len(self.utterances))]
