"""Procedural 3D heads: identity vector -> head parameters -> ellipsoid parts for a per-frame face state.

An identity is a fixed-length vector of numbers in [0, 1] drawn from a generator seeded by the identity id, so every
id in a range names one head and the vector alone rebuilds it. Each entry drives one trait (face shape, skin tone, hair
colour/volume/style, eyes, brows, nose, lips, ears, clothes, background), which gives a continuum of distinct heads.

Head coordinates: origin at the centre of the head, +y up, the face looking toward +z, sized so that a default
camera (distance 2.7, fx 4.26) frames head and shoulders like an FFHQ-aligned portrait.
"""

from dataclasses import dataclass

import numpy as np

from .expression import FaceState, head_rotation, rot_x, rot_y, rot_z
from .renderer import Ellipsoid, Scene

IDENTITY_DIM = 34  # 32 head traits + 2 voice traits (pitch, vocal tract; see speech.Voice)
HAIR_STYLES = ("short", "medium", "long", "bun", "buzz", "fringe", "bald")
_HAIR_WEIGHTS = np.array([0.22, 0.2, 0.22, 0.1, 0.1, 0.12, 0.04])
_HAIR_COLOURS = np.array(
    [
        [0.06, 0.05, 0.05],
        [0.17, 0.1, 0.06],
        [0.34, 0.21, 0.12],
        [0.5, 0.22, 0.1],
        [0.78, 0.63, 0.38],
        [0.63, 0.62, 0.6],
    ],
    np.float32,
)
_HAIR_COLOUR_WEIGHTS = np.array([0.26, 0.25, 0.19, 0.08, 0.14, 0.08])
_IRIS_COLOURS = np.array(
    [[0.33, 0.2, 0.1], [0.14, 0.08, 0.05], [0.28, 0.45, 0.66], [0.3, 0.46, 0.3], [0.5, 0.38, 0.18], [0.45, 0.5, 0.56]],
    np.float32,
)
# Parts are designed in small units and scaled up so the head fills an FFHQ/EG3D-style crop at distance 2.7.
SCALE = 1.3
# Pose pivot: roughly the top of the neck, so nods and turns look anatomical.
PIVOT = np.array([0.0, -0.1, -0.02], np.float32) * SCALE


def identity_vector(identity_id: int) -> np.ndarray:
    """The identity vector (float32, `IDENTITY_DIM`) for an integer id; deterministic."""
    if int(identity_id) < 0:
        raise ValueError(f"identity ids are non-negative integers, got {identity_id}.")
    return np.random.default_rng([int(identity_id), 0x5EAD]).random(IDENTITY_DIM).astype(np.float32)


def _hsv(h, s, v):
    rgb = np.clip(np.abs((h * 6.0 + np.array([0.0, 4.0, 2.0])) % 6.0 - 3.0) - 1.0, 0.0, 1.0)
    return (v * (1.0 - s + s * rgb)).astype(np.float32)


@dataclass
class HeadIdentity:
    """Traits of one head, decoded from an identity vector (see `from_vector`)."""

    vector: np.ndarray
    width: float
    height: float
    depth: float
    jaw_width: float
    chin: float
    cheeks: float
    skin: np.ndarray
    hair_style: str
    hair: np.ndarray
    hair_volume: float
    hairline: float
    eye_spacing: float
    eye_size: float
    eye_height: float
    iris: np.ndarray
    brow_thickness: float
    brow_tilt: float
    brow_height: float
    nose_length: float
    nose_width: float
    nose_depth: float
    mouth_width: float
    lip_thickness: float
    lips: np.ndarray
    ear_size: float
    ear_angle: float
    neck: float
    cloth: np.ndarray
    background: tuple

    @classmethod
    def from_vector(cls, vector) -> "HeadIdentity":
        u = np.asarray(vector, np.float64).reshape(-1)
        if u.shape != (IDENTITY_DIM,) or np.any(u < 0) or np.any(u > 1):
            raise ValueError(f"an identity vector has {IDENTITY_DIM} values in [0, 1]; got shape {u.shape}.")
        tone = u[6]  # light -> medium -> dark skin, then a warm/cool shift
        light, mid, dark = np.array([0.97, 0.8, 0.68]), np.array([0.8, 0.58, 0.43]), np.array([0.42, 0.27, 0.18])
        skin = np.where(tone < 0.5, light + (mid - light) * tone * 2, mid + (dark - mid) * (tone - 0.5) * 2)
        skin = np.clip(skin + np.array([0.03, 0.0, -0.03]) * (u[7] - 0.5) * 2, 0, 1)
        style = HAIR_STYLES[int(np.searchsorted(np.cumsum(_HAIR_WEIGHTS), u[8] * _HAIR_WEIGHTS.sum()))]
        shade = np.cumsum(_HAIR_COLOUR_WEIGHTS) / _HAIR_COLOUR_WEIGHTS.sum()
        k = min(int(np.searchsorted(shade, u[9])), 5)
        hair = _HAIR_COLOURS[k] * (0.85 + 0.3 * u[10] * u[11])
        lips = skin * np.array([0.86, 0.58, 0.58]) + np.array([0.1, 0.02, 0.04]) * u[24]
        bg_top = _hsv(u[30], 0.25, 0.55 + 0.35 * u[31])
        bg_bottom = _hsv((u[30] + 0.1 * (u[31] - 0.5)) % 1.0, 0.3, 0.25 + 0.3 * u[31])
        return cls(
            vector=u.astype(np.float32),
            width=0.92 + 0.16 * u[0],
            height=0.93 + 0.14 * u[1],
            depth=0.93 + 0.14 * u[2],
            jaw_width=0.82 + 0.26 * u[3],
            chin=0.9 + 0.25 * u[4],
            cheeks=0.85 + 0.3 * u[5],
            skin=skin.astype(np.float32),
            hair_style=style,
            hair=np.clip(hair, 0, 1).astype(np.float32),
            hair_volume=float(u[10]),
            hairline=0.12 + 0.03 * u[11],
            eye_spacing=0.039 + 0.009 * u[12],
            eye_size=0.018 + 0.004 * u[13],
            eye_height=0.03 + 0.014 * (u[15] - 0.5),
            iris=_IRIS_COLOURS[min(int(u[14] * 6), 5)],
            brow_thickness=0.0045 + 0.004 * u[16],
            brow_tilt=np.deg2rad(-6 + 16 * u[17]),
            brow_height=0.03 + 0.012 * u[18],
            nose_length=0.9 + 0.25 * u[19],
            nose_width=0.85 + 0.35 * u[20],
            nose_depth=0.85 + 0.3 * u[21],
            mouth_width=0.025 + 0.009 * u[22],
            lip_thickness=0.0075 + 0.005 * u[23],
            lips=np.clip(lips, 0, 1).astype(np.float32),
            ear_size=0.88 + 0.25 * u[25],
            ear_angle=np.deg2rad(12 + 18 * u[26]),
            neck=0.9 + 0.2 * u[27],
            cloth=_hsv(u[28], 0.55, 0.25 + 0.55 * u[29]),
            background=(bg_top, bg_bottom),
        )

    @classmethod
    def from_id(cls, identity_id: int) -> "HeadIdentity":
        return cls.from_vector(identity_vector(identity_id))


def _front_z(ellipsoids, x, y):
    """Largest z of the fronts of axis-aligned (center, radii) ellipsoids above (x, y): where features sit."""
    best = -1.0
    for c, r in ellipsoids:
        k = 1.0 - ((x - c[0]) / r[0]) ** 2 - ((y - c[1]) / r[1]) ** 2
        if k > 0:
            best = max(best, c[2] + r[2] * np.sqrt(k))
    return best


def _col(x, n):
    return np.asarray(x, np.float32).reshape(n, 1)


def head_parts(ident: HeadIdentity, state: FaceState) -> list:
    """The ellipsoid parts of `ident` for every frame of `state` (mouth, eyelids and gaze vary per frame)."""
    n = len(state)
    sw, sh, sd, skin = ident.width, ident.height, ident.depth, tuple(ident.skin)
    cranium = (np.array([0, 0.055 * sh, -0.025]), np.array([0.122 * sw, 0.135 * sh, 0.148 * sd]))
    face = (np.array([0, -0.01, -0.015]), np.array([0.112 * sw, 0.14 * sh, 0.14 * sd]))
    # The jaw ellipsoid is the muzzle and chin: narrower than the face so the union has no side bulges.
    jaw = (
        np.array([0, -0.09 * sh, 0.035]),
        np.array([0.068 * sw * ident.jaw_width, 0.075 * sh * ident.chin, 0.09 * sd]),
    )
    # Cheek fullness widens the lower face (a separate cheek ellipsoid would show a seam).
    face[1][0] *= 0.96 + 0.08 * (ident.cheeks - 0.85) / 0.3
    skin_shapes = [face, jaw]
    j, rnd, spr, clo = (_col(getattr(state, k), n) for k in ("jaw_open", "rounding", "spreading", "closure"))

    # Mouth: lips bracket a gap that the jaw opens, rounding narrows and pushes forward, spreading widens.
    my = -0.088 * sh
    zm = _front_z(skin_shapes, 0.0, my)
    half_w = ident.mouth_width * (1 + 0.22 * spr - 0.3 * rnd)
    gap = (0.001 + 0.03 * j) * (1 - 0.9 * clo)
    lt = ident.lip_thickness * (1 - 0.25 * clo)
    zero = np.zeros((n, 1), np.float32)
    jaw_c = np.concatenate([zero, zero + jaw[0][1] - 0.026 * j, zero + jaw[0][2] - 0.006 * j], 1)
    mouth_c = np.concatenate([zero, my - 0.004 - 0.012 * j, zero + zm], 1)
    cut_r = np.concatenate([half_w * 0.92, np.maximum(gap / 2, 1e-4), zero + 0.05], 1)
    skin_cut = ("mouth",)
    parts = [
        Ellipsoid("cranium", *cranium, skin, cut_by=skin_cut),
        Ellipsoid("face", *face, skin, cut_by=skin_cut),
        Ellipsoid("jaw", jaw_c, np.broadcast_to(jaw[1], (n, 3)), skin, cut_by=skin_cut),
        Ellipsoid("mouth", mouth_c, cut_r, (0, 0, 0), visible=False),
        Ellipsoid(
            "cavity",
            np.concatenate([zero, my - 0.012 - 0.012 * j, zero + zm - 0.05], 1),
            np.concatenate([half_w * 1.15 + 0.01, 0.03 + 0.015 * j, zero + 0.055], 1),
            (0.42, 0.1, 0.12),
            material="cavity",
            sides="back",
            inside_of=("face", "jaw"),
        ),
        Ellipsoid(
            "teeth_upper",
            (0, my + 0.007, zm - 0.013),
            np.concatenate([half_w * 0.85, zero + 0.0075, zero + 0.012], 1),
            (0.93, 0.9, 0.82),
            inside_of=("cavity",),
            shine=0.2,
        ),
        Ellipsoid(
            "teeth_lower",
            np.concatenate([zero, my - gap / 2 - 0.002, zero + zm - 0.015], 1),
            np.concatenate([half_w * 0.78, zero + 0.0065, zero + 0.012], 1),
            (0.88, 0.85, 0.78),
            inside_of=("cavity",),
        ),
        Ellipsoid(
            "tongue",
            np.concatenate([zero, my - gap / 2 - 0.012, zero + zm - 0.035], 1),
            np.concatenate([half_w * 0.9, zero + 0.014, zero + 0.035], 1),
            (0.72, 0.33, 0.35),
            inside_of=("cavity",),
        ),
        Ellipsoid(
            "lip_upper",
            np.concatenate([zero, my + gap / 2 + 0.55 * lt, zm - 0.004 + 0.012 * rnd], 1),
            np.concatenate([half_w, lt, 0.013 + 0.004 * rnd], 1),
            tuple(ident.lips),
            material="lip",
            cut_by=skin_cut,
            shine=0.12,
        ),
        Ellipsoid(
            "lip_lower",
            np.concatenate([zero, my - gap / 2 - 0.6 * lt, zm - 0.006 + 0.012 * rnd], 1),
            np.concatenate([half_w * 0.92, lt * 1.15, 0.014 + 0.004 * rnd], 1),
            tuple(ident.lips * 1.04),
            material="lip",
            cut_by=skin_cut,
            shine=0.15,
        ),
    ]
    parts += _eyes(ident, state, face, skin_shapes + [cranium])
    parts += _nose(ident, face, skin_shapes + [cranium])
    parts += _ears_neck_body(ident)
    parts += _hair(ident, cranium)
    return parts


def _eyes(ident, state, face, skin_shapes):
    n = len(state)
    parts = []
    re = ident.eye_size
    blink = np.asarray(state.blink, np.float32)
    for i, s in enumerate((-1, 1)):
        ex, ey = s * ident.eye_spacing * ident.width, ident.eye_height
        zf = _front_z(skin_shapes, ex, ey)
        center = np.array([ex, ey, zf - 0.78 * re], np.float32)
        # The gaze turns the eyeball; its local +z carries the iris.
        gaze = rot_y(np.deg2rad(state.gaze[:, 0]) + s * 0.04) @ rot_x(-np.deg2rad(state.gaze[:, 1]))
        parts.append(
            Ellipsoid(f"eye_{i}", center, (re, re, re), tuple(ident.iris), rotation=gaze, material="eye", shine=0.6)
        )
        # Upper lid: a shell over the eyeball keeping elevations above `theta`; a blink lowers theta past the lower lid.
        theta = np.deg2rad(22.0 - 105.0 * blink)
        up_n = np.stack([np.zeros(n), np.cos(theta), -np.sin(theta)], 1).astype(np.float32)
        parts.append(
            Ellipsoid(
                f"lid_upper_{i}",
                center,
                (re * 1.08, re * 1.1, re * 1.08),
                tuple(ident.skin * 0.97),
                material="lid",
                clips=((up_n, up_n @ center),),
            )
        )
        low = np.deg2rad(-32.0)
        lo_n = np.array([0.0, -np.cos(low), np.sin(low)], np.float32)
        parts.append(
            Ellipsoid(
                f"lid_lower_{i}",
                center,
                (re * 1.06, re * 1.06, re * 1.05),
                tuple(ident.skin * 0.97),
                material="lid",
                clips=((lo_n, float(lo_n @ center)),),
            )
        )
        bx, by = ex * 1.06, ey + ident.brow_height
        rot = rot_z(s * ident.brow_tilt)[0] @ rot_y(s * 0.45)[0]
        parts.append(
            Ellipsoid(
                f"brow_{i}",
                (bx, by, _front_z(skin_shapes, bx, by) - 0.004),
                (0.026, ident.brow_thickness, 0.008),
                tuple(ident.hair * 0.85),
                rotation=rot,
                material="hair",
            )
        )
    return parts


def _nose(ident, face, skin_shapes):
    nl, nw, nd, skin = ident.nose_length, ident.nose_width, ident.nose_depth, tuple(ident.skin)
    top = ident.eye_height
    tip_y = top - 0.066 * nl
    z_tip = _front_z(skin_shapes, 0.0, tip_y)
    parts = [
        Ellipsoid(
            "nose_bridge",
            (0, top - 0.03 * nl, _front_z(skin_shapes, 0, top - 0.03 * nl) - 0.004 + 0.006 * nd),
            (0.012 * nw, 0.042 * nl, 0.016 * nd),
            skin,
            rotation=rot_x(-0.38)[0],
        ),
        Ellipsoid("nose_tip", (0, tip_y, z_tip + 0.012 * nd), (0.016 * nw, 0.015, 0.016 * nd), skin, shine=0.05),
    ]
    for i, s in enumerate((-1, 1)):
        parts.append(
            Ellipsoid(
                f"nose_wing_{i}",
                (s * 0.017 * nw, tip_y - 0.004, z_tip + 0.001),
                (0.011 * nw, 0.01, 0.012),
                tuple(ident.skin * 0.96),
            )
        )
    return parts


def _ears_neck_body(ident):
    parts = []
    for i, s in enumerate((-1, 1)):
        parts.append(
            Ellipsoid(
                f"ear_{i}",
                (s * (0.118 * ident.width + 0.004), 0.012, -0.02),
                (0.012, 0.033 * ident.ear_size, 0.022 * ident.ear_size),
                tuple(ident.skin * np.array([1.0, 0.95, 0.95])),
                rotation=rot_y(s * ident.ear_angle)[0],
                material="ear",
            )
        )
    parts.append(
        Ellipsoid(
            "neck",
            (0, -0.2, -0.02),
            (0.053 * ident.neck, 0.14, 0.056 * ident.neck),
            tuple(ident.skin * 0.92),
            attached=False,
        )
    )
    parts.append(
        Ellipsoid("torso", (0, -0.37, -0.035), (0.26, 0.14, 0.12), tuple(ident.cloth), material="cloth", attached=False)
    )
    return parts


def _hair(ident, cranium):
    style, colour = ident.hair_style, tuple(ident.hair)
    if style == "bald":
        return []
    c, r = cranium
    grow = {"buzz": 1.02, "short": 1.05, "fringe": 1.07, "medium": 1.1, "long": 1.08, "bun": 1.05}[style]
    grow += 0.06 * ident.hair_volume * (style not in ("buzz",))
    slope = np.deg2rad(25.0 if style == "fringe" else 42.0)
    hairline = ident.hairline - (0.03 if style == "fringe" else 0.0) + (0.01 if style == "buzz" else 0.0)
    normal = np.array([0.0, np.cos(slope), -np.sin(slope)], np.float32)
    anchor = np.array([0.0, hairline, 0.1], np.float32)
    cap = Ellipsoid(
        "hair",
        c + np.array([0, 0.008, -0.006]),
        r * np.array([grow, grow * 0.97 + 0.03, grow]),
        colour,
        material="hair",
        sides="both",
        clips=((normal, float(normal @ anchor)),),
        shine=0.08,
    )
    parts = [cap]
    if style == "long":
        back = np.array([0.0, 0.0, -1.0], np.float32)
        parts.append(
            Ellipsoid(
                "hair_long",
                (0, -0.05, -0.05),
                (0.145 * ident.width * grow, 0.2, 0.11),
                colour,
                material="hair",
                clips=((back, -0.02),),
                shine=0.08,
            )
        )
    if style == "bun":
        parts.append(
            Ellipsoid(
                "hair_bun", (0, 0.16 * ident.height, -0.13), (0.05, 0.048, 0.05), colour, material="hair", shine=0.08
            )
        )
    return parts


def _scaled(part: Ellipsoid) -> Ellipsoid:
    part.center = np.asarray(part.center, np.float32) * SCALE
    part.radii = np.asarray(part.radii, np.float32) * SCALE
    part.clips = tuple((n, np.asarray(o, np.float32) * SCALE) for n, o in part.clips)
    return part


def build_scene(ident: HeadIdentity, state: FaceState, light=(-0.45, 0.55, 0.75)) -> Scene:
    """A renderable scene: the head's parts posed by `state` for every frame."""
    return Scene(
        parts=[_scaled(p) for p in head_parts(ident, state)],
        head_rotation=head_rotation(state.pose),
        head_translation=np.asarray(state.pose[:, 3:6], np.float32),
        pivot=PIVOT,
        light=np.asarray(light, np.float32),
        background=ident.background,
    )
