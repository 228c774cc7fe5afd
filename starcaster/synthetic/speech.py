"""A small formant synthesiser: a timed phoneme sequence -> a speech-like 16 kHz waveform.

Source-filter synthesis: the voiced source is a sum of harmonics of a gently moving pitch (spectral tilt 1/k),
shaped by the vocal tract's formant resonances, which glide between phonemes (coarticulation in the sound, matching
the coarticulated mouth). Consonants add band-limited noise: frication for /s sh f th/, a silent closure then a burst
(and aspiration) for stops, a low murmur for nasals. Slow parameters are computed on the phoneme module's control grid
(200 Hz) and interpolated to audio rate. Every output sample is known phonetically, which the dataset relies on.
"""

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfilt

from .phonemes import CONTROL_RATE, PHONEMES, Utterance, _gaussian_smooth

SAMPLE_RATE = 16000
_BANDWIDTHS = np.array([90.0, 110.0, 170.0])  # formant bandwidths (Hz)
_GAINS = np.array([1.0, 0.55, 0.28])  # relative formant peak gains


@dataclass
class Voice:
    """A speaker: mean pitch (Hz), vocal tract scale (formants multiply by it) and breathiness."""

    f0: float = 120.0
    tract: float = 1.0
    breath: float = 0.02

    @classmethod
    def from_identity(cls, vector) -> "Voice":
        """The voice of an identity vector (its last two entries), so each head speaks with its own voice."""
        u = np.asarray(vector, np.float64).reshape(-1)
        return cls(
            f0=90.0 + 140.0 * float(u[-2]),
            tract=0.92 + 0.2 * float(u[-1]) + 0.1 * float(u[-2]),
            breath=0.02 + 0.03 * float(u[-1]),
        )


def _control_tracks(utt: Utterance, voice: Voice, rng: np.random.Generator):
    """Voicing and noise amplitudes, formants and the noise band index per control step."""
    n = int(round(utt.duration * CONTROL_RATE))
    t = (np.arange(n) + 0.5) / CONTROL_RATE
    idx = utt.at(t)
    starts = np.concatenate([[0.0], np.cumsum(utt.durations)[:-1]])
    pos = (t - starts[idx]) / utt.durations[idx]  # 0..1 within the phoneme
    table = [PHONEMES[p] for p in utt.phonemes]
    kinds = np.array([p.kind for p in table])[idx]
    voiced = np.array([p.voiced for p in table])[idx]
    jaw = np.array([p.mouth[0] for p in table])[idx]
    formants = np.array([p.formants for p in table], np.float64)[idx] * voice.tract
    bands = sorted({p.noise for p in table if p.noise != (0.0, 0.0)})
    band = np.array([bands.index(p.noise) if p.noise in bands else -1 for p in table])[idx]

    av = np.zeros(n)
    an = np.zeros(n)
    vowel = kinds == "vowel"
    av[vowel] = 0.45 + 0.55 * jaw[vowel]  # open vowels are louder: vowel energy follows the jaw
    av[kinds == "approximant"] = 0.4
    av[kinds == "nasal"] = 0.22
    fric = kinds == "fricative"
    av[fric & voiced] = 0.2
    an[fric] = 0.12 + 0.2 * np.isin(band[fric], [bands.index(b) for b in bands if b[0] >= 2000])
    stop = kinds == "stop"
    closure = stop & (pos < 0.6)
    av[closure & voiced] = 0.06  # voice bar
    burst = stop & (pos >= 0.6) & (pos < 0.78)
    an[burst] = 0.4
    aspiration = stop & (pos >= 0.78)
    an[aspiration & ~voiced] = 0.12
    av[aspiration & voiced] = 0.3
    # Formants glide between phonemes (about 50 ms), amplitudes ramp quickly (a few ms) to avoid clicks.
    formants = _gaussian_smooth(formants, 0.025)
    av = _gaussian_smooth(av[:, None], 0.008)[:, 0]
    an = _gaussian_smooth(an[:, None], 0.004)[:, 0]
    # Pitch: a slow intonation contour plus a little random drift.
    phase = rng.uniform(0, 2 * np.pi, 2)
    f0 = voice.f0 * (1 + 0.08 * np.sin(2 * np.pi * 0.55 * t + phase[0]) + 0.04 * np.sin(2 * np.pi * 1.7 * t + phase[1]))
    f0 *= 1 + 0.01 * _gaussian_smooth(rng.standard_normal((n, 1)), 0.05)[:, 0]
    return t, av, an, formants, f0, band, bands


def synthesize(utt: Utterance, voice: Voice | None = None, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """Render `utt` to a float32 mono waveform of exactly round(duration * sample_rate) samples in [-1, 1]."""
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be at least 8000 Hz for speech, got {sample_rate}.")
    voice = voice or Voice()
    rng = np.random.default_rng(seed)
    t_ctrl, av, an, formants, f0, band, bands = _control_tracks(utt, voice, rng)
    num = int(round(utt.duration * sample_rate))
    t = np.arange(num) / sample_rate
    up = lambda x: np.interp(t, t_ctrl, x)  # noqa: E731
    f0_s, av_s, an_s = up(f0), up(av), up(an)
    f_s = np.stack([up(formants[:, i]) for i in range(3)], 1)

    # Voiced source through the formant envelope, harmonic by harmonic.
    phase = 2 * np.pi * np.cumsum(f0_s) / sample_rate
    voiced = np.zeros(num)
    nyquist = 0.45 * sample_rate
    for k in range(1, int(min(nyquist, 5000.0) / max(f0_s.min(), 50.0)) + 1):
        freq = k * f0_s
        envelope = (_GAINS / (1.0 + ((freq[:, None] - f_s) / _BANDWIDTHS) ** 2)).sum(1)
        voiced += np.where(freq < nyquist, envelope / k, 0.0) * np.sin(k * phase)
    voiced *= av_s
    voiced += voice.breath * av_s * rng.standard_normal(num)

    # Noise: one band-passed noise per band used, gated by that band's share of the noise amplitude.
    noise = np.zeros(num)
    white = rng.standard_normal(num)
    for b, (lo, hi) in enumerate(bands):
        hi = min(hi, 0.49 * sample_rate)
        sos = butter(4, [lo, hi], btype="bandpass", fs=sample_rate, output="sos")
        gate = up((band == b).astype(np.float64))
        noise += sosfilt(sos, white) * gate
    audio = 0.55 * voiced + 0.9 * noise * an_s
    return np.tanh(audio).astype(np.float32)
