"""Soft shading and surface detail for the ray-cast head.

One world-fixed key light (so a head turning or a camera orbiting sees consistent light and shadow sides), wrapped
Lambert diffuse for soft skin-like falloff, a sky/ground ambient term, and a Blinn-Phong highlight for wet surfaces
(eyes, lips). Surface detail (iris and pupil, hair strands, lash lines) is computed in each part's own unit-sphere
coordinates, so it sticks to the 3D surface and stays consistent across views.
"""

import numpy as np


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


def background(scene, num_frames: int, size: int) -> np.ndarray:
    """(F, size*size, 3) vertical gradient from the scene's top to bottom colour."""
    top, bottom = (np.asarray(c, np.float32) for c in scene.background)
    v = ((np.arange(size, dtype=np.float32) + 0.5) / size).repeat(size)[:, None]
    return np.broadcast_to(top * (1 - v) + bottom * v, (num_frames, size * size, 3)).copy()


def _surface_detail(part, albedo, q, pw, planes):
    """Per-material albedo changes; `q` are hit points in the part's unit-sphere frame."""
    if part.material == "eye":
        qn = _normalize(q)
        cos = qn[:, 2]  # the gaze axis is the part's local +z
        iris = albedo  # an eye's colour is its iris; the sclera is shared
        streaks = 0.85 + 0.15 * np.sin(26.0 * np.arctan2(qn[:, 1], qn[:, 0]))[:, None]
        albedo = np.where((cos > 0.87)[:, None], iris * streaks, np.float32([0.92, 0.89, 0.86]))
        albedo = np.where(((cos > 0.87) & (cos < 0.895))[:, None], iris * 0.45, albedo)  # limbal ring
        albedo = np.where((cos > 0.975)[:, None], np.float32(0.03), albedo)  # pupil
    elif part.material == "hair":
        azimuth = np.arctan2(q[:, 0], q[:, 2])
        strands = np.sin(40.0 * azimuth + 2.0 * q[:, 1])
        albedo = albedo * (0.92 + 0.1 * strands)[:, None]
    elif part.material == "lid" and planes:
        pn, po = planes[0]
        edge = np.einsum("ni,ni->n", pn, pw) - po  # distance to the lid margin, world units
        albedo = np.where((edge < 0.0028)[:, None], np.float32(0.07), albedo * 0.93)
    elif part.material == "ear":
        inner = (np.abs(q[:, 1]) < 0.55) & (np.abs(q[:, 2]) < 0.5) & (q[:, 0] > 0.2)
        albedo = np.where(inner[:, None], albedo * 0.78, albedo)
    return albedo


def shade(scene, frames: slice, world, origin, direction, best_t, best, size: int) -> np.ndarray:
    """Colour every pixel of a chunk: (F, P, 3) float in [0, 1]."""
    num_frames = best.shape[0]
    rgb = background(scene, num_frames, size)
    light = _normalize(np.asarray(scene.light, np.float32))
    # Group pixels by the (part, side) they see with one sort instead of one full-image mask per part.
    flat = best.ravel()
    order = np.argsort(flat, kind="stable")
    codes, starts = np.unique(flat[order], return_index=True)
    ends = np.append(starts[1:], len(flat))
    for code, lo, hi in zip(codes, starts, ends):
        if code < 0:
            continue
        k, side = divmod(int(code), 2)
        part = scene.parts[k]
        fi, pi = np.divmod(order[lo:hi], best.shape[1])
        t = best_t[fi, pi]
        d = direction[fi, pi]
        pw = origin[fi] + t[:, None] * d
        m, center, planes = world[k]
        q = np.einsum("nij,nj->ni", m[fi], pw - center[fi])
        normal = _normalize(np.einsum("nji,nj->ni", m[fi], q))  # gradient of |M (p - c)|^2
        if side == 1:
            normal = -normal  # an inner wall faces the inside
        albedo = np.broadcast_to(np.asarray(part.color, np.float32), (len(t), 3))
        albedo = _surface_detail(part, albedo, q, pw, [(pn[fi], po[fi]) for pn, po in planes])
        ndl = normal @ light
        diffuse = np.clip((ndl + 0.35) / 1.35, 0.0, None)  # wrapped Lambert: soft terminator
        ambient = 0.28 + 0.1 * normal[:, 1]  # brighter from the sky than from the ground
        view = -_normalize(d)
        half = _normalize(light + view)
        spec = part.shine * np.clip((normal * half).sum(-1), 0.0, None) ** 40
        if part.material == "cavity":
            ambient, diffuse = ambient * 0.5, diffuse * 0.35  # light barely reaches inside the mouth
        rgb[fi, pi] = albedo * (ambient + 0.78 * diffuse)[:, None] + spec[:, None]
    return rgb
