"""Natural head motion, blinks and gaze: smooth, speech-coupled, neither static nor jitter.

Head motion is a few slow sinusoids (sway, 0.1-0.6 Hz) plus low-passed noise, with nods that follow the speech
envelope (people raise and dip the head on stressed syllables). Blinks are a renewal process (one every 2-6 s, a
refractory gap) with the asymmetric profile of a real blink: a fast close (~80 ms), a short hold, a slower open.
Gaze makes occasional small saccades and holds.
"""

import numpy as np

# Typical talking-head ranges: degrees for yaw/pitch/roll, world units for translation.
POSE_SCALE = np.array([6.0, 4.0, 2.5, 0.012, 0.008, 0.01])


def _smooth_noise(rng, num_frames: int, fps: float, sigma_s: float) -> np.ndarray:
    """Unit-variance-ish noise low-passed with a Gaussian of `sigma_s` seconds."""
    pad = int(3 * sigma_s * fps) + 1
    raw = rng.standard_normal((num_frames + 2 * pad, 1))
    k = np.exp(-0.5 * (np.arange(-pad, pad + 1) / (sigma_s * fps)) ** 2)
    out = np.convolve(raw[:, 0], k / np.sqrt((k**2).sum()), mode="valid")
    return out[:num_frames]


def head_motion(
    rng: np.random.Generator, num_frames: int, fps: float = 25.0, speech_energy=None, amplitude: float = 1.0
) -> np.ndarray:
    """(F, 6) pose: yaw, pitch, roll (degrees), tx, ty, tz (world units).

    `speech_energy` (F,), if given, adds small nods locked to the speech envelope.
    """
    t = np.arange(num_frames) / fps
    pose = np.zeros((num_frames, 6))
    for i in range(6):
        freqs = rng.uniform(0.1, 0.6, 2)
        phases = rng.uniform(0, 2 * np.pi, 2)
        sway = 0.6 * np.sin(2 * np.pi * freqs[0] * t + phases[0]) + 0.3 * np.sin(2 * np.pi * freqs[1] * t + phases[1])
        pose[:, i] = sway + 0.35 * _smooth_noise(rng, num_frames, fps, 0.35)
    pose[:, 0:3] += rng.uniform(-0.7, 0.7, 3)  # each clip has its own resting pose
    pose *= POSE_SCALE * amplitude
    if speech_energy is not None:
        e = np.asarray(speech_energy, np.float64)
        e = (e - e.mean()) / (e.std() + 1e-6)
        radius = max(int(0.3 * fps), 1)  # zero-phase ~100 ms Gaussian on the frame grid
        k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / (0.1 * fps)) ** 2)
        nod = np.convolve(np.pad(e, radius, mode="edge"), k / k.sum(), mode="valid")
        pose[:, 1] += 1.5 * amplitude * nod
    return pose.astype(np.float32)


def blink_profile(dt: np.ndarray, close: float = 0.08, hold: float = 0.03, open_: float = 0.16) -> np.ndarray:
    """Eyelid closure (0..1) at `dt` seconds after a blink starts: fast close, short hold, slower open."""
    out = np.zeros_like(dt, dtype=np.float64)
    closing = (dt >= 0) & (dt < close)
    out[closing] = np.sin(0.5 * np.pi * dt[closing] / close) ** 2
    out[(dt >= close) & (dt < close + hold)] = 1.0
    opening = (dt >= close + hold) & (dt < close + hold + open_)
    out[opening] = np.cos(0.5 * np.pi * (dt[opening] - close - hold) / open_) ** 2
    return out


def blinks(rng: np.random.Generator, num_frames: int, fps: float = 25.0, mean_interval: float = 3.5) -> np.ndarray:
    """(F,) blink closure sampled at frame centres; blink starts form a renewal process with a refractory gap."""
    duration = num_frames / fps
    starts, t = [], -rng.uniform(0, mean_interval)  # start mid-cycle so clips do not all blink at the same time
    while t < duration:
        t += 1.0 + rng.gamma(2.0, (mean_interval - 1.0) / 2.0)
        starts.append(t)
    centres = (np.arange(num_frames) + 0.5) / fps
    closure = np.zeros(num_frames)
    for s in starts:
        closure = np.maximum(closure, blink_profile(centres - s))
    return closure.astype(np.float32)


def gaze(rng: np.random.Generator, num_frames: int, fps: float = 25.0) -> np.ndarray:
    """(F, 2) eye rotation in degrees: holds of 0.5-2 s joined by quick (~50 ms) saccades."""
    out = np.zeros((num_frames, 2))
    target, t, i = rng.normal(0, 3.0, 2), 0.0, 0
    times = np.arange(num_frames) / fps
    current = target.copy()
    while i < num_frames:
        t += rng.uniform(0.5, 2.0)
        j = int(np.searchsorted(times, t))
        target = np.clip(rng.normal(0, 3.0, 2), -8, 8)
        out[i:j] = current
        if j < num_frames:
            out[j] = 0.5 * (current + target)  # the saccade itself
        current, i = target, j + 1
    return out.astype(np.float32)
