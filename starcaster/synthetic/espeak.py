"""Optional real synthetic speech: eSpeak NG through its C library, with phoneme timing from its phoneme events.

`espeak-ng` (apt package `espeak-ng`, which ships `libespeak-ng.so.1`) is used when installed; `available()` says so.
The library reports every phoneme with its sample position, so the mouth is driven by the same phoneme timing that
produced the sound. eSpeak's phoneme mnemonics are mapped onto this package's phoneme set (`phonemes.PHONEMES`).
"""

import ctypes
import ctypes.util
import threading

import numpy as np
from scipy.signal import resample_poly

from .phonemes import Utterance
from .speech import SAMPLE_RATE

_LOCK = threading.Lock()
_STATE = {}
# eSpeak mnemonic (stress and length marks removed) -> our phoneme. Diphthongs map to their dominant mouth shape.
_MAP = {
    "a": "ae",
    "a#": "ah",
    "A": "aa",
    "A@": "aa",
    "aa": "aa",
    "@": "ah",
    "@2": "ah",
    "@5": "ah",
    "@L": "l",
    "V": "ah",
    "3": "er",
    "3:": "er",
    "E": "eh",
    "e": "eh",
    "e@": "eh",
    "eI": "eh",
    "I": "ih",
    "I2": "ih",
    "I#": "ih",
    "i": "iy",
    "i@": "iy",
    "0": "ao",
    "O": "ao",
    "O@": "ao",
    "OI": "ao",
    "o@": "ow",
    "oU": "ow",
    "U": "uh",
    "U@": "uh",
    "u": "uw",
    "aI": "aa",
    "aU": "aa",
    "aI@": "aa",
    "aU@": "aa",
    "p": "p",
    "b": "b",
    "m": "m",
    "f": "f",
    "v": "v",
    "T": "th",
    "D": "th",
    "t": "t",
    "d": "d",
    "n": "n",
    "l": "l",
    "k": "k",
    "g": "g",
    "N": "n",
    "s": "s",
    "z": "z",
    "S": "sh",
    "Z": "sh",
    "tS": "ch",
    "dZ": "ch",
    "r": "r",
    "r-": "r",
    "w": "w",
    "j": "y",
    "h": "hh",
    "t#": "t",
    "?": "sil",
}


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
_EVENT_PHONEME, _SYNCHRONOUS, _PHONEME_EVENTS, _RATE, _PITCH = 7, 2, 1, 1, 3


def _library():
    if "lib" not in _STATE:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            lib = ctypes.CDLL(name)
            rate = lib.espeak_Initialize(_SYNCHRONOUS, 0, None, _PHONEME_EVENTS)
        except OSError:
            lib, rate = None, -1
        _STATE["lib"], _STATE["rate"] = (lib, rate) if rate > 0 else (None, -1)
        _STATE["buffers"] = ([], [])

        def collect(wav, count, events):
            audio, marks = _STATE["buffers"]
            if count > 0:
                audio.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
            i = 0
            while events[i].type != 0:
                if events[i].type == _EVENT_PHONEME:
                    marks.append((events[i].id.decode("ascii", "replace"), events[i].sample))
                i += 1
            return 0

        _STATE["callback"] = _CALLBACK(collect)  # keep a reference: the library holds only the pointer
        if _STATE["lib"] is not None:
            _STATE["lib"].espeak_SetSynthCallback(_STATE["callback"])
    return _STATE["lib"]


def available() -> bool:
    """True when the eSpeak NG library can be loaded and initialised."""
    with _LOCK:
        return _library() is not None


def _ours(mnemonic: str) -> str:
    key = mnemonic.replace("'", "").replace(",", "").replace("%", "").replace("=", "")
    if key.startswith("_") or not key:
        return "sil"
    return _MAP.get(key, _MAP.get(key.rstrip(":"), "ah" if key[0] in "aeiouAEIOU@3V0" else "sil"))


def speak(text: str, voice: str = "en-us", rate: int = 160, pitch: int = 50, sample_rate: int = SAMPLE_RATE):
    """Synthesise `text`; returns (float32 audio at `sample_rate`, `Utterance` timed from eSpeak's phoneme events)."""
    if not text or not text.strip():
        raise ValueError("speak() needs some text to say.")
    with _LOCK:
        lib = _library()
        if lib is None:
            raise ValueError(
                "eSpeak NG is not installed: `apt-get install espeak-ng` (or use the formant synthesiser)."
            )
        audio, marks = _STATE["buffers"]
        audio.clear()
        marks.clear()
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice {voice!r} (try 'en-us', 'en', 'en-us+f3').")
        lib.espeak_SetParameter(_RATE, int(rate), 0)
        lib.espeak_SetParameter(_PITCH, int(pitch), 0)
        data = text.encode("utf-8")
        lib.espeak_Synth(ctypes.c_char_p(data), len(data) + 1, 0, 1, 0, 0, None, None)
        lib.espeak_Synchronize()
        native = np.concatenate(audio).astype(np.float32) / 32768.0 if audio else np.zeros(1, np.float32)
        events = list(marks)
        native_rate = _STATE["rate"]
    wave = resample_poly(native, sample_rate, native_rate).astype(np.float32)
    # Phoneme i lasts from its event to the next one; anything before the first event is silence. eSpeak's events
    # trail the sound slightly: moving them 12 ms earlier centred the jaw/vowel-energy correlation on lag 0
    # (measured on several sentences).
    lead = int(0.012 * native_rate)
    starts = [0] + [max(s - lead, 1) for _, s in events]
    names = ["sil"] + [_ours(p) for p, _ in events]
    ends = starts[1:] + [len(native)]
    durations = np.array(ends, np.float64) - np.array(starts, np.float64)
    keep = durations > 0
    utt = Utterance([n for n, k in zip(names, keep) if k], durations[keep] / native_rate, text)
    return wave, utt.fit(len(wave) / sample_rate)


_WORDS = (
    "the a my your this that one two three red blue green small big old new good bright quiet happy "
    "cat dog bird house tree river road window morning evening friend teacher music story answer picture "
    "sees finds keeps opens reads brings builds paints moves says likes wants needs makes takes "
    "today slowly often never always here there again very really"
).split()


def random_sentence(rng: np.random.Generator, words: int = 12) -> str:
    """A grammatical-looking English word sequence, so real speech of varied phonetics can be produced offline."""
    return " ".join(str(w) for w in rng.choice(_WORDS, size=words)) + "."


def speak_identity(rng: np.random.Generator, vector, seconds: float, sample_rate: int = SAMPLE_RATE):
    """Real speech for a clip: a random sentence in a voice picked by the identity, windowed to `seconds`."""
    u = np.asarray(vector, np.float64).reshape(-1)
    variant = ["m1", "m2", "m3", "m4", "m7", "f1", "f2", "f3", "f4", "f5"][min(int(u[-2] * 10), 9)]
    audio, utt = speak(
        random_sentence(rng, int(6 + 4 * seconds)),
        voice=f"en-us+{variant}",
        rate=int(135 + 50 * u[-1]),
        pitch=int(30 + 40 * u[-2]),
        sample_rate=sample_rate,
    )
    total = int(round(seconds * sample_rate))
    start = int(rng.integers(0, max(len(audio) - total, 0) + 1))
    clip = np.zeros(total, np.float32)
    piece = audio[start : start + total]
    clip[: len(piece)] = piece
    return clip, utt.window(start / sample_rate, total / sample_rate)
