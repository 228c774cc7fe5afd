"""Exact ray casting of ellipsoid heads, vectorised over pixels and frames (numpy, CPU).

A head is a set of ellipsoids. Each ray is intersected analytically with every ellipsoid, which gives, per ray and
ellipsoid, the interval [t0, t1] where the ray is inside it. Nearest-hit compositing over those intervals gives exact
occlusion from any camera, and three interval tests give the little constructive geometry a face needs:
  - `clips`: keep only the part of a shell on one side of a plane (hair caps, eyelids),
  - `cut_by`: remove the part inside another ellipsoid (the mouth opening carved through skin and lips),
  - `inside_of`: show a surface only inside another one (the mouth cavity wall and teeth, hidden behind the skin).
Cameras follow `starcaster.conditioning.camera`: 4x4 world-to-camera extrinsics with OpenCV axes and normalised 3x3
intrinsics (pixel column = u * W). Rays are cast with a camera-space direction whose z is 1, so the ray parameter t
of a hit is exactly its camera depth, the same number `camera.project` returns.
"""

from dataclasses import dataclass, field

import numpy as np

from .shading import shade

_NEAR = 1e-3


@dataclass
class Ellipsoid:
    """One part of a head. Arrays may be constant ((3,)) or per frame ((F, 3)).

    `center`, `radii`, `rotation` (columns: the ellipsoid's axes) are in head coordinates when `attached` (the part
    follows the head pose) and in world coordinates otherwise. `sides` is "front" (entry surface), "back" (the inner
    wall, for cavities) or "both" (open shells such as hair). `clips` are (normal, offset) pairs keeping
    n . p >= offset.
    """

    name: str
    center: np.ndarray
    radii: np.ndarray
    color: tuple
    rotation: np.ndarray | None = None
    material: str = "skin"
    attached: bool = True
    sides: str = "front"
    clips: tuple = ()
    inside_of: tuple = ()
    cut_by: tuple = ()
    visible: bool = True
    shine: float = 0.0


@dataclass
class Scene:
    """Everything the renderer needs for F frames: parts, the rigid head motion, light and background."""

    parts: list
    head_rotation: np.ndarray  # (F, 3, 3)
    head_translation: np.ndarray  # (F, 3)
    pivot: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    light: np.ndarray = field(default_factory=lambda: np.array([-0.45, 0.55, 0.75], np.float32))
    background: tuple = ((0.55, 0.6, 0.68), (0.3, 0.33, 0.4))

    def __len__(self) -> int:
        return len(self.head_rotation)


def _frames(x, num_frames: int, shape: tuple) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return np.broadcast_to(x, (num_frames,) + shape) if x.shape == shape else x


def _world_parts(scene: Scene, frames: slice):
    """Per part: (M (F,3,3) world->unit-sphere, center (F,3), world clip planes [(n (F,3), offset (F,))])."""
    rot, trans = scene.head_rotation[frames], scene.head_translation[frames]
    n = len(rot)
    pivot = np.asarray(scene.pivot, np.float32)
    out = []
    for part in scene.parts:
        center = _frames(part.center, len(scene), (3,))[frames]
        radii = _frames(part.radii, len(scene), (3,))[frames]
        axes = (
            np.broadcast_to(np.eye(3, dtype=np.float32), (n, 3, 3))
            if part.rotation is None
            else _frames(part.rotation, len(scene), (3, 3))[frames]
        )
        planes = [(_frames(pn, len(scene), (3,))[frames], _frames(po, len(scene), ())[frames]) for pn, po in part.clips]
        if part.attached:
            axes = rot @ axes
            center = np.einsum("fij,fj->fi", rot, center - pivot) + pivot + trans
            moved = []
            for pn, po in planes:
                # n.p_head >= o  <=>  (R n).p_world >= o - n.pivot + (R n).(pivot + T)
                rn = np.einsum("fij,fj->fi", rot, pn)
                moved.append((rn, po - pn @ pivot + np.einsum("fi,fi->f", rn, pivot + trans)))
            planes = moved
        m = np.swapaxes(axes, 1, 2) / np.maximum(radii, 1e-6)[:, :, None]
        out.append((m.astype(np.float32), center.astype(np.float32), planes))
    return out


def camera_rays(extrinsics: np.ndarray, intrinsics: np.ndarray, size: int):
    """World ray origins (F,3) and directions (F,H*W,3) through pixel centres; camera-space direction has z = 1."""
    ext = np.asarray(extrinsics, np.float32).reshape(-1, 4, 4)
    intr = np.asarray(intrinsics, np.float32).reshape(-1, 3, 3)
    if len(intr) == 1 and len(ext) > 1:
        intr = np.broadcast_to(intr, (len(ext), 3, 3))
    if len(intr) != len(ext):
        raise ValueError(f"got {len(ext)} extrinsics but {len(intr)} intrinsics; give one intrinsic or one per frame.")
    uv = (np.arange(size, dtype=np.float32) + 0.5) / size
    u, v = np.meshgrid(uv, uv)  # u along columns, v along rows
    x = (u.reshape(1, -1) - intr[:, 0, 2:3]) / intr[:, 0, 0:1]
    y = (v.reshape(1, -1) - intr[:, 1, 2:3]) / intr[:, 1, 1:2]
    d_cam = np.stack([x, y, np.ones_like(x)], -1)  # (F, P, 3)
    rot_t = np.swapaxes(ext[:, :3, :3], 1, 2)
    origin = -np.einsum("fij,fj->fi", rot_t, ext[:, :3, 3])
    return origin, np.einsum("fij,fpj->fpi", rot_t, d_cam)


def render(
    scene: Scene, extrinsics, intrinsics, size: int = 128, supersample: int = 1, chunk: int = 6, buffers: bool = False
):
    """Render F frames to uint8 (F, size, size, 3).

    With `buffers=True` also returns depth (F, size, size) (camera z, inf on background) and the index of the part
    seen at each pixel (-1 on background), both at `size` (taken from the sub-pixel nearest each pixel centre).
    """
    if size < 8 or supersample < 1:
        raise ValueError(f"size must be >= 8 and supersample >= 1 (got {size}, {supersample}).")
    ext = np.asarray(extrinsics, np.float32).reshape(-1, 4, 4)
    if len(ext) != len(scene):
        raise ValueError(
            f"the scene has {len(scene)} frames but {len(ext)} cameras were given; give one camera per frame."
        )
    intr = np.asarray(intrinsics, np.float32).reshape(-1, 3, 3)
    intr = np.broadcast_to(intr, (len(ext), 3, 3)) if len(intr) == 1 else intr
    hi = size * supersample
    images, depths, parts = [], [], []
    for start in range(0, len(ext), chunk):
        frames = slice(start, min(start + chunk, len(ext)))
        rgb, depth, part = _render_chunk(scene, frames, ext[frames], intr[frames], hi)
        images.append(rgb)
        depths.append(depth)
        parts.append(part)
    rgb = np.concatenate(images).reshape(len(ext), size, supersample, size, supersample, 3).mean((2, 4))
    rgb = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if not buffers:
        return rgb
    pick = supersample // 2
    depth = np.concatenate(depths).reshape(len(ext), hi, hi)[:, pick::supersample, pick::supersample]
    part = np.concatenate(parts).reshape(len(ext), hi, hi)[:, pick::supersample, pick::supersample]
    return rgb, depth, part


def _screen_box(m, center, ext, intr, size):
    """Rows/columns (union over the chunk's frames) that can see an ellipsoid: its projected bounding sphere."""
    radius = 1.05 / np.linalg.svd(m, compute_uv=False).min(-1)  # largest semi-axis
    cam = np.einsum("fij,fj->fi", ext[:, :3, :3], center) + ext[:, :3, 3]
    z = cam[:, 2] - radius
    if np.any(z <= _NEAR):
        return 0, size, 0, size  # the camera is at or inside the part's bound
    half_u, half_v = intr[:, 0, 0] * radius / z, intr[:, 1, 1] * radius / z
    u = intr[:, 0, 0] * cam[:, 0] / cam[:, 2] + intr[:, 0, 2]
    v = intr[:, 1, 1] * cam[:, 1] / cam[:, 2] + intr[:, 1, 2]
    c0, c1 = np.floor((u - half_u).min() * size) - 1, np.ceil((u + half_u).max() * size) + 1
    r0, r1 = np.floor((v - half_v).min() * size) - 1, np.ceil((v + half_v).max() * size) + 1
    clamp = lambda x: int(min(max(x, 0), size))  # noqa: E731
    return clamp(r0), clamp(r1), clamp(c0), clamp(c1)


def _render_chunk(scene: Scene, frames: slice, ext, intr, size: int):
    origin, direction = camera_rays(ext, intr, size)
    n = len(direction)
    direction = direction.reshape(n, size, size, 3)
    d = np.moveaxis(direction, -1, 0).copy()  # planar (3, F, H, W): cheap per-component products
    dd = {(i, j): d[i] * d[j] for i in range(3) for j in range(i, 3)}
    world = _world_parts(scene, frames)
    names = {part.name: k for k, part in enumerate(scene.parts)}
    # Per part, the ray interval inside it; only rays in the part's screen box are intersected (small parts are cheap).
    # With q = M (o + t d - c): |q|^2 = 1  <=>  a t^2 + 2 b t + c = 0, a = d^T (M^T M) d, b = d . M^T M (o - c).
    t0s, t1s, boxes = [], [], []
    for m, center, _ in world:
        r0, r1, c0, c1 = box = _screen_box(m, center, ext, intr, size)
        t0, t1 = np.full((n, size, size), np.inf, np.float32), np.full((n, size, size), -np.inf, np.float32)
        if r1 > r0 and c1 > c0:
            sl = (slice(None), slice(r0, r1), slice(c0, c1))
            gram = np.swapaxes(m, 1, 2) @ m
            oc = np.einsum("fij,fj->fi", m, origin - center)
            w = np.einsum("fji,fj->fi", m, oc)
            col = lambda x: x[:, None, None]  # noqa: E731 - per-frame scalar over the box
            a = sum(col(gram[:, i, j] * (1 if i == j else 2)) * dd[i, j][sl] for (i, j) in dd)
            b = col(w[:, 0]) * d[0][sl] + col(w[:, 1]) * d[1][sl] + col(w[:, 2]) * d[2][sl]
            c = col((oc * oc).sum(-1) - 1.0)
            disc = b * b - a * c
            hit = disc > 0
            s = np.sqrt(np.where(hit, disc, 0.0))
            t0[sl] = np.where(hit, (-b - s) / a, np.inf)
            t1[sl] = np.where(hit, (-b + s) / a, -np.inf)
        t0s.append(t0)
        t1s.append(t1)
        boxes.append(box)

    best_t = np.full((n, size, size), np.inf, np.float32)
    best = np.full((n, size, size), -1, np.int32)
    for k, part in enumerate(scene.parts):
        r0, r1, c0, c1 = boxes[k]
        if not part.visible or r1 <= r0 or c1 <= c0:
            continue
        box = (slice(None), slice(r0, r1), slice(c0, c1))

        def inside(j, t, box=box):
            return (t > t0s[j][box]) & (t < t1s[j][box])

        sides = {"front": (0,), "back": (1,), "both": (0, 1)}[part.sides]
        for side in sides:
            t = (t0s[k] if side == 0 else t1s[k])[box]
            ok = (t > _NEAR) & (t < best_t[box])
            if not ok.any():
                continue
            for pn, po in world[k][2]:
                along = sum(pn[:, i, None, None] * d[i][box] for i in range(3))
                ok &= (np.einsum("fi,fi->f", pn, origin) - po)[:, None, None] + t * along >= 0
            if part.inside_of:
                ok &= np.logical_or.reduce([inside(names[o], t) for o in part.inside_of])
            for cutter in part.cut_by:
                ok &= ~inside(names[cutter], t)
            best_t[box] = np.where(ok, t, best_t[box])
            best[box] = np.where(ok, 2 * k + side, best[box])

    best_t, best = best_t.reshape(n, -1), best.reshape(n, -1)
    rgb = shade(scene, frames, world, origin, direction.reshape(n, -1, 3), best_t, best, size)
    part_index = np.where(best >= 0, best // 2, -1)
    return rgb, best_t, part_index
