"""Phonemes, visemes and the coarticulated mouth track that speech drives.

Each phoneme carries what both the synthesiser and the face need: its sound (kind, voicing, formants, noise band)
and its mouth target (jaw opening, lip rounding, spreading, closure). Visemes follow the common 15-class set
(sil, PP, FF, TH, DD, kk, CH, SS, nn, RR, aa, E, ih, oh, ou). The mouth moves toward each phoneme's target and is
smoothed with symmetric kernels, which gives coarticulation (neighbouring sounds blend) without any lag between the
sound and the mouth.
"""

from dataclasses import dataclass

import numpy as np

VISEMES = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou")


@dataclass(frozen=True)
class Phoneme:
    kind: str  # "vowel", "stop", "fricative", "nasal", "approximant", "silence"
    viseme: str
    mouth: tuple  # (jaw_open, rounding, spreading, closure) targets
    formants: tuple = (500.0, 1500.0, 2500.0)
    voiced: bool = True
    noise: tuple = (0.0, 0.0)  # band (low, high) Hz of frication / burst noise; (0, 0) for none
    duration: tuple = (0.06, 0.1)  # seconds (min, max)


_V = dict(kind="vowel", duration=(0.08, 0.17))
PHONEMES = {
    "sil": Phoneme("silence", "sil", (0.0, 0.0, 0.0, 0.25), voiced=False, duration=(0.15, 0.4)),
    # Vowels: formants of adult speech (Peterson & Barney style), jaw opening follows F1.
    "aa": Phoneme(viseme="aa", mouth=(0.95, 0.05, 0.15, 0.0), formants=(730, 1090, 2440), **_V),
    "ae": Phoneme(viseme="aa", mouth=(0.8, 0.0, 0.45, 0.0), formants=(660, 1720, 2410), **_V),
    "ah": Phoneme(viseme="aa", mouth=(0.72, 0.05, 0.2, 0.0), formants=(640, 1190, 2390), **_V),
    "eh": Phoneme(viseme="E", mouth=(0.58, 0.0, 0.5, 0.0), formants=(530, 1840, 2480), **_V),
    "ih": Phoneme(viseme="ih", mouth=(0.38, 0.0, 0.65, 0.0), formants=(390, 1990, 2550), **_V),
    "iy": Phoneme(viseme="ih", mouth=(0.22, 0.0, 0.95, 0.0), formants=(270, 2290, 3010), **_V),
    "ao": Phoneme(viseme="oh", mouth=(0.7, 0.6, 0.0, 0.0), formants=(570, 840, 2410), **_V),
    "ow": Phoneme(viseme="oh", mouth=(0.52, 0.8, 0.0, 0.0), formants=(460, 900, 2400), **_V),
    "uh": Phoneme(viseme="ou", mouth=(0.35, 0.65, 0.0, 0.0), formants=(440, 1020, 2240), **_V),
    "uw": Phoneme(viseme="ou", mouth=(0.2, 1.0, 0.0, 0.0), formants=(300, 870, 2240), **_V),
    "er": Phoneme(viseme="RR", mouth=(0.4, 0.35, 0.1, 0.0), formants=(490, 1350, 1690), **_V),
    # Consonants.
    "p": Phoneme("stop", "PP", (0.03, 0.1, 0.0, 1.0), voiced=False, noise=(300, 3000)),
    "b": Phoneme("stop", "PP", (0.03, 0.1, 0.0, 1.0), noise=(200, 2500)),
    "m": Phoneme("nasal", "PP", (0.03, 0.05, 0.0, 1.0), formants=(250, 1100, 2300)),
    "f": Phoneme("fricative", "FF", (0.12, 0.0, 0.2, 0.6), voiced=False, noise=(1500, 7500), duration=(0.07, 0.12)),
    "v": Phoneme("fricative", "FF", (0.12, 0.0, 0.2, 0.6), noise=(1500, 7000)),
    "th": Phoneme("fricative", "TH", (0.22, 0.0, 0.25, 0.0), voiced=False, noise=(2000, 7500), duration=(0.07, 0.12)),
    "t": Phoneme("stop", "DD", (0.18, 0.0, 0.3, 0.0), voiced=False, noise=(2500, 7000)),
    "d": Phoneme("stop", "DD", (0.18, 0.0, 0.3, 0.0), noise=(2000, 6000)),
    "n": Phoneme("nasal", "nn", (0.18, 0.0, 0.25, 0.0), formants=(250, 1700, 2600)),
    "l": Phoneme("approximant", "nn", (0.28, 0.0, 0.2, 0.0), formants=(360, 1300, 2700)),
    "k": Phoneme("stop", "kk", (0.3, 0.0, 0.15, 0.0), voiced=False, noise=(1200, 4000)),
    "g": Phoneme("stop", "kk", (0.3, 0.0, 0.15, 0.0), noise=(1000, 3500)),
    "s": Phoneme("fricative", "SS", (0.1, 0.0, 0.6, 0.0), voiced=False, noise=(4500, 7800), duration=(0.08, 0.14)),
    "z": Phoneme("fricative", "SS", (0.1, 0.0, 0.6, 0.0), noise=(4000, 7500)),
    "sh": Phoneme("fricative", "CH", (0.18, 0.6, 0.0, 0.0), voiced=False, noise=(2000, 4500), duration=(0.08, 0.14)),
    "ch": Phoneme("stop", "CH", (0.18, 0.55, 0.0, 0.0), voiced=False, noise=(2000, 5000)),
    "r": Phoneme("approximant", "RR", (0.25, 0.45, 0.0, 0.0), formants=(420, 1300, 1600)),
    "w": Phoneme("approximant", "ou", (0.12, 0.95, 0.0, 0.0), formants=(300, 700, 2200)),
    "y": Phoneme("approximant", "ih", (0.15, 0.0, 0.75, 0.0), formants=(280, 2200, 2950)),
    "hh": Phoneme("fricative", "kk", (0.4, 0.0, 0.1, 0.0), voiced=False, noise=(500, 5000)),
}
VOWELS = tuple(k for k, p in PHONEMES.items() if p.kind == "vowel")
CONSONANTS = tuple(k for k, p in PHONEMES.items() if p.kind not in ("vowel", "silence"))
CONTROL_RATE = 200  # Hz: the mouth and the synthesiser's slow parameters are computed on this grid


@dataclass
class Utterance:
    """A timed phoneme sequence: `phonemes[i]` lasts `durations[i]` seconds. `text` is a readable spelling."""

    phonemes: list
    durations: np.ndarray
    text: str = ""

    def __post_init__(self):
        unknown = sorted({p for p in self.phonemes if p not in PHONEMES})
        if unknown:
            raise ValueError(f"unknown phonemes {unknown}; use the names in starcaster.synthetic.phonemes.PHONEMES.")
        self.durations = np.asarray(self.durations, np.float64)
        if len(self.durations) != len(self.phonemes) or np.any(self.durations <= 0):
            raise ValueError("an utterance needs one positive duration (seconds) per phoneme.")

    @property
    def duration(self) -> float:
        return float(self.durations.sum())

    def fit(self, seconds: float) -> "Utterance":
        """Pad with silence or cut so the utterance lasts exactly `seconds`."""
        ends = np.cumsum(self.durations)
        if ends[-1] < seconds:
            return Utterance(self.phonemes + ["sil"], np.append(self.durations, seconds - ends[-1]), self.text)
        keep = int(np.searchsorted(ends, seconds - 1e-9)) + 1
        durations = self.durations[:keep].copy()
        durations[-1] -= ends[keep - 1] - seconds
        return Utterance(self.phonemes[:keep], durations, self.text)

    def window(self, start: float, seconds: float) -> "Utterance":
        """The part heard from `start` for `seconds` (padded with silence past the end)."""
        ends = np.cumsum(self.durations)
        first = int(np.searchsorted(ends, start, side="right"))
        if first >= len(self.phonemes):
            return Utterance(["sil"], [seconds], "")
        durations = self.durations[first:].copy()
        durations[0] = ends[first] - start
        return Utterance(self.phonemes[first:], durations, self.text).fit(seconds)

    def at(self, times: np.ndarray) -> np.ndarray:
        """Index of the phoneme sounding at each time (seconds)."""
        return np.clip(np.searchsorted(np.cumsum(self.durations), times, side="right"), 0, len(self.phonemes) - 1)


def random_utterance(rng: np.random.Generator, seconds: float, pause: float = 0.2) -> Utterance:
    """Pseudo-words of (C)(C)V(C) syllables in short phrases separated by pauses; lasts exactly `seconds`.

    The first `pause` seconds are silent so clips start from a closed mouth, as real recordings do.
    """
    phonemes, durations, words, word_of = ["sil"], [max(pause, 1e-3)], [], [-1]
    while sum(durations) < seconds:
        for _ in range(int(rng.integers(1, 5))):  # words in this phrase
            word = []
            for _ in range(int(rng.integers(1, 4))):  # syllables in this word
                if rng.random() < 0.8:
                    word.append(str(rng.choice(CONSONANTS[:-1])))
                if rng.random() < 0.15:
                    word.append(str(rng.choice(["r", "l", "w", "y"])))
                word.append(str(rng.choice(VOWELS)))
                if rng.random() < 0.4:
                    word.append(str(rng.choice(CONSONANTS)))
            words.append("-".join(word))
            for p in word:
                lo, hi = PHONEMES[p].duration
                phonemes.append(p)
                durations.append(float(rng.uniform(lo, hi)))
                word_of.append(len(words) - 1)
        lo, hi = PHONEMES["sil"].duration
        phonemes.append("sil")
        durations.append(float(rng.uniform(lo, hi)))
        word_of.append(-1)
    utt = Utterance(phonemes, np.array(durations)).fit(seconds)
    # The text names the words heard in the clip (a word cut at the end keeps only its spoken phonemes).
    heard = {}
    for p, w in zip(utt.phonemes, word_of):
        if w >= 0:
            heard.setdefault(w, []).append(p)
    utt.text = " ".join("-".join(ps) for ps in heard.values())
    return utt


def _gaussian_smooth(x: np.ndarray, sigma_s: float) -> np.ndarray:
    """Zero-phase Gaussian smoothing along axis 0 (edges padded by repetition): no lag by construction."""
    sigma = sigma_s * CONTROL_RATE
    radius = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.pad(x, [(radius, radius)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    return np.stack([np.convolve(padded[:, i], k, mode="valid") for i in range(x.shape[1])], 1)


def mouth_control(utt: Utterance) -> np.ndarray:
    """(T, 4) mouth state on the `CONTROL_RATE` grid: targets held per phoneme, blended by coarticulation."""
    t = (np.arange(int(round(utt.duration * CONTROL_RATE))) + 0.5) / CONTROL_RATE
    idx = utt.at(t)
    targets = np.array([PHONEMES[p].mouth for p in utt.phonemes], np.float64)[idx]
    # Jaw and lip shape blend over ~60 ms; lip closure is quicker (a /p/ must seal) so it is smoothed less.
    smooth = _gaussian_smooth(targets[:, :3], 0.03)
    closure = _gaussian_smooth(targets[:, 3:], 0.012)
    mouth = np.concatenate([smooth, closure], 1)
    sealed = closure[:, 0] > 0.5  # a sealed mouth cannot be open: bilabials pull the jaw up
    mouth[sealed, 0] *= 1.0 - closure[sealed, 0] * 0.8
    return np.clip(mouth, 0.0, 1.0)


def frame_average(control: np.ndarray, num_frames: int, fps: float) -> np.ndarray:
    """Average a control-rate signal over each video frame's time window (window centred on the frame)."""
    edges = np.round(np.arange(num_frames + 1) / fps * CONTROL_RATE).astype(int)
    edges = np.clip(edges, 0, len(control))
    cums = np.concatenate([np.zeros((1,) + control.shape[1:]), np.cumsum(control, 0)])
    return (cums[edges[1:]] - cums[edges[:-1]]) / np.maximum(edges[1:] - edges[:-1], 1)[
        (...,) + (None,) * (control.ndim - 1)
    ]


def frame_visemes(utt: Utterance, num_frames: int, fps: float) -> np.ndarray:
    """(F,) viseme id (index into `VISEMES`) of the phoneme sounding at each frame's centre."""
    centres = (np.arange(num_frames) + 0.5) / fps
    return np.array([VISEMES.index(PHONEMES[utt.phonemes[i]].viseme) for i in utt.at(centres)], np.int64)
