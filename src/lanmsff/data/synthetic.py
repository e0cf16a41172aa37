"""A synthetic dataset in the exact KDEF layout, for the demo and the tests.

KDEF is license-gated, so the project never ships or downloads it. This module draws faces
procedurally and writes them where a real copy would be::

    <out>/KDEF_and_AKDEF/KDEF/<AF01..BM35>/<AF01ANS.JPG ...>   562x762 RGB JPEGs

Each face is ray-cast from a shaded ellipsoid head turned to the KDEF camera angle (FL -90 deg,
HL -45, S 0, HR +45, FR +90; full profiles show one side), with features projected from 3D:

* the *identity* fixes head shape, skin tone, hair colour and style, and feature spacing;
* the two *sessions* (A, B) of one identity differ in lighting, framing and a little in grooming;
* the *expression* moves brows, lids and mouth in class-specific ways with a random intensity and
  a random admixture of another expression, so classes are learnable but not trivially separable.

Generation is deterministic for a given seed. Run ``python -m lanmsff.data.synthetic --help``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from filelock import FileLock

from lanmsff.data.kdef_names import (
    ANGLE_DEGREES,
    ANGLES,
    EXPRESSIONS,
    GENDERS,
    IDENTITIES_PER_GENDER,
    SESSIONS,
    KDEFName,
)
from lanmsff.errors import EXIT_USER_ERROR, UserError
from lanmsff.utils.io import atomic_write_bytes, atomic_write_text
from lanmsff.utils.progress import track

WIDTH, HEIGHT = 562, 762
MANIFEST = "SYNTHETIC.json"
GENERATOR_VERSION = 2
MAX_IDENTITIES = len(GENDERS) * IDENTITIES_PER_GENDER

# Expression deformations at full intensity. Units: pixels for offsets, fractions for ratios.
#   brow: raise of both brows; inner: extra raise of the inner ends (negative = frown);
#   eye: relative change of lid opening; curve: lift of the mouth corners (smile > 0);
#   open: mouth opening; width: relative change of mouth width; snarl: raise of the upper lip;
#   wrinkle: nose-bridge wrinkles; teeth: visible teeth.
_EXPRESSION_SHAPES: dict[str, dict[str, float]] = {
    "AF": dict(brow=20, inner=14, eye=0.7, curve=-6, open=26, width=0.3, snarl=0, wrinkle=0, teeth=0.6),
    "AN": dict(brow=-14, inner=-20, eye=-0.45, curve=-9, open=0, width=-0.25, snarl=4, wrinkle=0.5, teeth=0),
    "DI": dict(brow=-9, inner=-6, eye=-0.55, curve=-13, open=8, width=0.0, snarl=14, wrinkle=1.0, teeth=0.3),
    "HA": dict(brow=3, inner=0, eye=-0.35, curve=22, open=14, width=0.35, snarl=0, wrinkle=0, teeth=1.0),
    "NE": dict(brow=0, inner=0, eye=0.0, curve=0, open=0, width=0.0, snarl=0, wrinkle=0, teeth=0),
    "SA": dict(brow=4, inner=17, eye=-0.3, curve=-18, open=0, width=-0.1, snarl=0, wrinkle=0, teeth=0),
    "SU": dict(brow=26, inner=4, eye=0.8, curve=0, open=46, width=-0.38, snarl=0, wrinkle=0, teeth=0.2),
}
_SHAPE_KEYS = tuple(_EXPRESSION_SHAPES["NE"])


# ----------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class Identity:
    """What stays fixed for a person across sessions, expressions and angles."""

    rx: float  # head half-width (px)
    ry: float  # head half-height
    rz: float  # head half-depth
    skin: tuple[float, float, float]  # RGB 0..1
    hair: tuple[float, float, float]
    hairline: float  # head-relative height where the hair starts (-1 top .. 1 chin)
    long_hair: bool
    eye_dx: float  # half distance between eye centres, fraction of rx
    eye_y: float  # eye height, fraction of ry (negative = above centre)
    eye_w: float  # eye half-width (px)
    eye_h: float  # eye half-opening (px)
    iris: tuple[float, float, float]
    brow_gap: float
    brow_thick: int
    nose_y: float
    nose_len: float  # protrusion (px)
    mouth_y: float
    mouth_w: float  # half-width (px)
    lip: tuple[float, float, float]
    beard: float  # 0 = none
    neutral_bias: tuple[float, ...]  # person-specific resting deformation, same keys as the shapes


def _identity(rng: np.random.Generator, gender: str) -> Identity:
    female = gender == "F"
    tone = rng.uniform(0.55, 0.95)
    skin = (0.45 + 0.5 * tone, 0.32 + 0.45 * tone, 0.22 + 0.4 * tone)
    hair_dark = rng.uniform(0.05, 0.5)
    hair = (hair_dark, hair_dark * rng.uniform(0.6, 0.9), hair_dark * rng.uniform(0.3, 0.7))
    rx = rng.uniform(122, 142) if female else rng.uniform(130, 152)
    bias = rng.normal(0.0, 0.12, size=len(_SHAPE_KEYS))
    return Identity(
        rx=rx,
        ry=rx * rng.uniform(1.25, 1.42),
        rz=rx * rng.uniform(1.05, 1.2),
        skin=skin,
        hair=hair,
        hairline=rng.uniform(-0.72, -0.5),
        long_hair=bool(rng.random() < (0.75 if female else 0.15)),
        eye_dx=rng.uniform(0.36, 0.46),
        eye_y=rng.uniform(-0.16, -0.04),
        eye_w=rng.uniform(19, 25),
        eye_h=rng.uniform(8, 11),
        iris=tuple(rng.uniform(0.05, 0.45, size=3)),
        brow_gap=rng.uniform(20, 30),
        brow_thick=int(rng.integers(6, 11)),
        nose_y=rng.uniform(0.2, 0.3),
        nose_len=rng.uniform(22, 38),
        mouth_y=rng.uniform(0.48, 0.58),
        mouth_w=rng.uniform(40, 50),
        lip=(rng.uniform(0.42, 0.6), rng.uniform(0.14, 0.24), rng.uniform(0.14, 0.24)),
        beard=0.0 if female or rng.random() < 0.6 else rng.uniform(0.3, 0.8),
        neutral_bias=tuple(float(b) for b in bias),
    )


@dataclass(frozen=True)
class Session:
    """What changes between sessions A and B of one person."""

    light: tuple[float, float, float]  # direction, normalised
    exposure: float
    dx: float
    dy: float
    scale: float
    background: float


def _session(rng: np.random.Generator) -> Session:
    light = np.array([rng.uniform(-0.25, 0.25), rng.uniform(-0.5, -0.3), 1.0])
    light /= np.linalg.norm(light)
    return Session(
        light=tuple(light),
        exposure=rng.uniform(0.95, 1.05),
        dx=rng.uniform(-10, 10),
        dy=rng.uniform(-12, 12),
        scale=rng.uniform(0.95, 1.05),
        background=rng.uniform(0.6, 0.7),
    )


def _expression(rng: np.random.Generator, code: str, person: Identity) -> dict[str, float]:
    """The deformation of one photograph: scaled class shape + another class mixed in + personal bias."""
    intensity = rng.uniform(0.5, 1.0)
    other = EXPRESSIONS[int(rng.integers(len(EXPRESSIONS)))]
    mix = rng.uniform(0.0, 0.25)
    neutral_scale = {"brow": 10, "inner": 8, "eye": 0.3, "curve": 8, "open": 8, "width": 0.15}
    shape = {}
    for i, key in enumerate(_SHAPE_KEYS):
        value = intensity * _EXPRESSION_SHAPES[code][key] + mix * _EXPRESSION_SHAPES[other][key]
        value += person.neutral_bias[i] * neutral_scale.get(key, 0.0)
        shape[key] = value
    shape["open"] = max(shape["open"], 0.0)
    return shape


# ----------------------------------------------------------------------------- drawing
class _Head:
    """Projection of head-surface points for one yaw, with the face placed on the canvas."""

    def __init__(self, person: Identity, yaw_deg: float, cx: float, cy: float, scale: float) -> None:
        self.p, self.cx, self.cy, self.s = person, cx, cy, scale
        self.yaw = math.radians(yaw_deg)
        self.cos, self.sin = math.cos(self.yaw), math.sin(self.yaw)

    def surface_z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        p = self.p
        inside = 1.0 - (x / p.rx) ** 2 - (y / p.ry) ** 2
        return p.rz * np.sqrt(np.clip(inside, 0.0, None))

    def project(self, x, y, z=None, extra_z: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Canvas points (N, 2) and visibility (N,) of head points; ``z`` defaults to the surface."""
        x, y = np.asarray(x, float), np.asarray(y, float)
        z = self.surface_z(x, y) + extra_z if z is None else np.asarray(z, float)
        xr = x * self.cos + z * self.sin
        zr = -x * self.sin + z * self.cos
        pts = np.stack([self.cx + self.s * xr, self.cy + self.s * y], axis=-1)
        return pts, zr > -0.02 * self.p.rz

    def polyline(self, img, x, y, color, thickness, extra_z: float = 4.0) -> None:
        pts, vis = self.project(x, y, extra_z=extra_z)
        for a in range(len(pts) - 1):
            if vis[a] and vis[a + 1]:
                cv2.line(img, _pt(pts[a]), _pt(pts[a + 1]), color, max(1, int(thickness * self.s)), cv2.LINE_AA)

    def polygon(self, img, x, y, color, extra_z: float = 4.0) -> None:
        pts, vis = self.project(x, y, extra_z=extra_z)
        if vis.mean() > 0.5:
            cv2.fillPoly(img, [np.round(pts[vis] * 16).astype(np.int32)], color, cv2.LINE_AA, shift=4)


def _pt(p: np.ndarray) -> tuple[int, int]:
    return round(float(p[0])), round(float(p[1]))


def _rgb(c: Iterable[float], k: float = 1.0) -> tuple[int, int, int]:
    return tuple(int(np.clip(v * k * 255, 0, 255)) for v in c)  # type: ignore[return-value]


def _render_head(img: np.ndarray, head: _Head, session: Session) -> None:
    """Ray-cast the shaded ellipsoid: skin in front of the hairline, hair above and behind it."""
    p, s = head.p, head.s
    half_w = s * math.sqrt((p.rx * head.cos) ** 2 + (p.rz * head.sin) ** 2)
    x0, x1 = int(head.cx - half_w - 2), int(head.cx + half_w + 3)
    y0, y1 = int(head.cy - s * p.ry - 2), int(head.cy + s * p.ry + 3)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    u, v = (xs - head.cx) / s, (ys - head.cy) / s  # view coordinates in head units
    # Ray along z through (u, v) meets the rotated ellipsoid; solve the quadratic for the front hit.
    c2, s2 = head.cos, head.sin
    a = (s2 / p.rx) ** 2 + (c2 / p.rz) ** 2
    b = 2 * u * (c2 * s2 / p.rx**2 - s2 * c2 / p.rz**2)
    c = (u * c2 / p.rx) ** 2 + (u * s2 / p.rz) ** 2 + (v / p.ry) ** 2 - 1
    disc = b * b - 4 * a * c
    hit = disc > 0
    w = (-b + np.sqrt(np.clip(disc, 0, None))) / (2 * a)  # view depth of the front surface
    hx, hz = u * c2 - w * s2, u * s2 + w * c2  # back to head coordinates
    normal = np.stack([hx / p.rx**2, v / p.ry**2, hz / p.rz**2], axis=-1)
    normal_view = np.stack(
        [normal[..., 0] * c2 + normal[..., 2] * s2, normal[..., 1], -normal[..., 0] * s2 + normal[..., 2] * c2], -1
    )
    normal_view /= np.linalg.norm(normal_view, axis=-1, keepdims=True) + 1e-9
    shade = 0.35 + 0.65 * np.clip(normal_view @ np.array(session.light), 0, 1)
    rel_y, rel_z = v / p.ry, hz / p.rz
    # Hair: above a hairline that dips at the temples, and over the back of the head, reaching
    # lower behind than at the sides (lower still for long hair).
    nape = 0.55 if p.long_hair else 0.3
    hair = (rel_y < p.hairline + 0.25 * (hx / p.rx) ** 2) | ((rel_z < -0.1) & (rel_y < nape + rel_z * 0.4 - 0.05))
    if p.beard:
        weight = np.clip((rel_y - 0.3) / 0.2, 0, 1) * np.clip((rel_z + 0.1) / 0.2, 0, 1)
        mix = (weight * p.beard * 0.6)[..., None]
    else:
        mix = 0.0
    skin = np.asarray(p.skin) * (1 - mix) + np.asarray(p.hair) * mix
    color = np.where(hair[..., None], np.asarray(p.hair) * (0.6 + 0.4 * shade[..., None]), skin * shade[..., None])
    color = np.clip(color * session.exposure * 255, 0, 255)
    roi = img[y0:y1, x0:x1]
    roi[hit] = color[hit].astype(np.uint8)


def _draw_body(img: np.ndarray, head: _Head, person: Identity, session: Session) -> None:
    s, cx, cy = head.s, head.cx, head.cy
    neck_top, neck_w = cy + s * person.ry * 0.55, s * person.rx * 0.55
    shirt = _rgb((0.5, 0.5, 0.52), session.exposure)
    shoulders = np.array(
        [
            [cx - neck_w * 3.6, HEIGHT],
            [cx - neck_w * 3.0, cy + s * person.ry * 1.35],
            [cx - neck_w, cy + s * person.ry * 1.05],
            [cx + neck_w, cy + s * person.ry * 1.05],
            [cx + neck_w * 3.0, cy + s * person.ry * 1.35],
            [cx + neck_w * 3.6, HEIGHT],
        ],
        np.int32,
    )
    cv2.rectangle(
        img,
        (int(cx - neck_w), int(neck_top)),
        (int(cx + neck_w), int(cy + s * person.ry * 1.2)),
        _rgb(person.skin, 0.75 * session.exposure),
        -1,
    )
    cv2.fillPoly(img, [shoulders], shirt, cv2.LINE_AA)
    if person.long_hair:
        for side in (-1, 1):
            if head.sin * side < 0.8:
                x = cx + side * s * person.rx * 0.95
                cv2.ellipse(
                    img,
                    (int(x), int(cy + s * person.ry * 0.35)),
                    (int(s * 28), int(s * person.ry * 0.75)),
                    0,
                    0,
                    360,
                    _rgb(person.hair, 0.7 * session.exposure),
                    -1,
                    cv2.LINE_AA,
                )


def _draw_ears(img: np.ndarray, head: _Head, person: Identity) -> None:
    for side in (-1, 1):
        ex = side * person.rx * 0.98
        ey = person.ry * (person.eye_y + 0.12)
        pts, _ = head.project([ex], [ey], z=[0.0])
        facing = -side * head.sin  # > 0 when the ear's side turns towards the camera
        if facing < -0.2 or person.long_hair:
            continue
        width = max(3.0, 16 * abs(facing) + 4) * head.s
        cv2.ellipse(
            img, _pt(pts[0]), (int(width), int(26 * head.s)), 0, 0, 360, _rgb(person.skin, 0.8), -1, cv2.LINE_AA
        )
        cv2.ellipse(
            img, _pt(pts[0]), (int(width * 0.5), int(15 * head.s)), 0, 0, 360, _rgb(person.skin, 0.6), 2, cv2.LINE_AA
        )


def _draw_eye(img: np.ndarray, head: _Head, person: Identity, side: int, shape: dict[str, float]) -> None:
    p = person
    cx, cy = side * p.eye_dx * p.rx, p.eye_y * p.ry
    opening = max(0.15, 1.0 + shape["eye"])
    t = np.linspace(-1, 1, 15)
    xs = cx + t * p.eye_w
    upper = cy - p.eye_h * opening * (1 - t**2) ** 0.8
    lower = cy + p.eye_h * 0.55 * opening * (1 - t**2) ** 0.8
    pts_u, vis_u = head.project(xs, upper)
    pts_l, vis_l = head.project(xs, lower)
    if vis_u.mean() < 0.5:
        return
    outline = np.concatenate([pts_u[vis_u], pts_l[vis_l][::-1]])
    # Draw sclera and iris on a copy of the eye's neighbourhood, then keep them inside the lids only.
    x0, y0 = np.floor(outline.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(outline.max(axis=0)).astype(int) + 3
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, img.shape[1]), min(y1, img.shape[0])
    roi = img[y0:y1, x0:x1]
    local = np.round((outline - [x0, y0]) * 16).astype(np.int32)
    mask = np.zeros(roi.shape[:2], np.uint8)
    cv2.fillPoly(mask, [local], 255, cv2.LINE_AA, shift=4)
    layer = roi.copy()
    cv2.fillPoly(layer, [local], (235, 232, 225), cv2.LINE_AA, shift=4)
    centre, _ = head.project([cx], [cy - 1])
    c = _pt(centre[0] - [x0, y0])
    foreshort = abs(math.cos(head.yaw + math.atan2(cx, p.rz)))
    radius = p.eye_h * 1.05 * head.s
    cv2.ellipse(layer, c, (max(1, int(radius * foreshort)), int(radius)), 0, 0, 360, _rgb(p.iris), -1, cv2.LINE_AA)
    cv2.ellipse(
        layer, c, (max(1, int(radius * 0.45 * foreshort)), int(radius * 0.45)), 0, 0, 360, (10, 10, 10), -1, cv2.LINE_AA
    )
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    roi[:] = (layer * alpha + roi * (1 - alpha)).astype(np.uint8)
    head.polyline(img, xs, upper, _rgb(p.hair, 0.4), 3)
    head.polyline(img, xs, lower, _rgb(p.skin, 0.55), 1)


def _draw_brow(img: np.ndarray, head: _Head, person: Identity, side: int, shape: dict[str, float]) -> None:
    p = person
    base = p.eye_y * p.ry - p.brow_gap - shape["brow"]
    t = np.linspace(0, 1, 8)  # 0 = inner end, 1 = outer end
    xs = side * (p.eye_dx * p.rx + (t * 2.2 - 1.0) * p.eye_w)
    ys = base - shape["inner"] * (1 - t) ** 1.5 - 6 * np.sin(np.pi * t) * (1 - 0.5 * (shape["inner"] < 0))
    head.polyline(img, xs, ys, _rgb(p.hair, 0.5), p.brow_thick)


def _draw_nose(img: np.ndarray, head: _Head, person: Identity, shape: dict[str, float]) -> None:
    p = person
    top, tip = p.eye_y * p.ry + 4, p.nose_y * p.ry
    t = np.linspace(0, 1, 10)
    bridge_y = top + (tip - top) * t
    bridge_z = head.surface_z(np.zeros_like(t), bridge_y) + p.nose_len * t**1.3
    pts, _vis = head.project(np.zeros_like(t), bridge_y, z=bridge_z)
    base_pts, _ = head.project([0.0], [tip + 12], z=head.surface_z(np.zeros(1), np.array([tip + 12])) + 2)
    shade = _rgb(p.skin, 0.68)
    if abs(head.sin) > 0.3:  # turned: the nose shows as a silhouette
        poly = np.concatenate([pts, base_pts])
        cv2.fillPoly(img, [np.round(poly * 16).astype(np.int32)], _rgb(p.skin, 0.92), cv2.LINE_AA, shift=4)
        cv2.polylines(img, [np.round(poly * 16).astype(np.int32)], False, shade, 2, cv2.LINE_AA, shift=4)
    else:
        side_x = 0.35 * p.eye_w * np.sign(head.sin or 1.0)
        head.polyline(img, side_x + 0.0 * t, bridge_y, shade, 2, extra_z=8)
    for side in (-1, 1):
        nostril, vis_n = head.project([side * 9.0], [tip + 8], extra_z=p.nose_len * 0.5)
        if vis_n[0]:
            cv2.ellipse(
                img, _pt(nostril[0]), (int(5 * head.s), int(3 * head.s)), 0, 0, 360, _rgb(p.skin, 0.35), -1, cv2.LINE_AA
            )
    if shape["wrinkle"] > 0.3:
        for k in range(2):
            y = top + 6 + k * 7
            head.polyline(
                img, np.linspace(-12, 12, 5), np.full(5, y) + np.array([2, -1, -2, -1, 2]), _rgb(p.skin, 0.55), 2
            )


def _draw_mouth(img: np.ndarray, head: _Head, person: Identity, shape: dict[str, float]) -> None:
    p = person
    half = p.mouth_w * (1 + shape["width"])
    t = np.linspace(-1, 1, 21)
    xs = t * half
    centre = p.mouth_y * p.ry - shape["curve"] * t**2 + shape["curve"] * 0.3
    opening = shape["open"]
    upper = centre - opening * 0.35 * (1 - t**2) - shape["snarl"] * np.exp(-((t - 0.35) ** 2) / 0.1)
    lower = centre + opening * 0.65 * (1 - t**2) ** 0.8
    lip_color = _rgb(p.lip)
    if opening > 3:
        head.polygon(img, np.concatenate([xs, xs[::-1]]), np.concatenate([upper, lower[::-1]]), (40, 15, 20), extra_z=8)
        if shape["teeth"] > 0.4:
            teeth_low = upper + np.minimum(opening * 0.3, 7) * (1 - t**2)
            head.polygon(
                img,
                np.concatenate([xs * 0.8, xs[::-1] * 0.8]),
                np.concatenate([upper, teeth_low[::-1]]),
                (235, 235, 225),
            )
        head.polyline(img, xs, upper, lip_color, 4, extra_z=10)
        head.polyline(img, xs, lower, lip_color, 6, extra_z=10)
    else:
        head.polyline(img, xs, upper - 3, lip_color, 5, extra_z=10)
        head.polyline(img, xs, centre, _rgb(p.lip, 0.4), 2, extra_z=10)
        head.polyline(img, xs * 0.85, lower + 4, lip_color, 6, extra_z=10)
    if shape["curve"] > 6:  # cheeks rise in a smile
        for side in (-1, 1):
            cx = side * (half + 8)
            head.polyline(
                img, cx + side * np.linspace(0, 6, 6), centre[0] - np.linspace(30, 0, 6), _rgb(p.skin, 0.7), 2
            )


def render_face(name: KDEFName, seed: int = 0) -> np.ndarray:
    """Draw the synthetic photograph for one KDEF file name, as a (762, 562, 3) RGB uint8 array."""
    base = [seed, GENDERS.index(name.gender), name.identity]
    person = _identity(np.random.default_rng(base), name.gender)
    session = _session(np.random.default_rng([*base, SESSIONS.index(name.session)]))
    rng = np.random.default_rng(
        [*base, SESSIONS.index(name.session), EXPRESSIONS.index(name.expression), ANGLES.index(name.angle)]
    )
    shape = _expression(rng, name.expression, person)
    yaw = ANGLE_DEGREES[name.angle] + rng.uniform(-4, 4)
    bg = session.background
    column = np.linspace(1.05, 0.9, HEIGHT)[:, None] * np.array([bg, bg, bg * 1.04]) * 255
    img = np.ascontiguousarray(
        np.broadcast_to(np.clip(column, 0, 255).astype(np.uint8)[:, None, :], (HEIGHT, WIDTH, 3))
    )
    cx = WIDTH / 2 + session.dx + rng.uniform(-6, 6)
    cy = 345 + session.dy + rng.uniform(-6, 6)
    scale = session.scale * rng.uniform(0.97, 1.03)
    head = _Head(person, yaw, cx, cy, scale)
    # A real face is flatter than an ellipsoid, so its features stay visible in profile; features are
    # laid out as if the yaw of a full profile were 75 degrees instead of 90.
    face = _Head(person, yaw * 0.83 if abs(yaw) > 60 else yaw, cx, cy, scale)
    _draw_body(img, head, person, session)
    _render_head(img, head, session)
    _draw_ears(img, head, person)
    for side in (-1, 1):
        _draw_eye(img, face, person, side, shape)
        _draw_brow(img, face, person, side, shape)
    _draw_nose(img, face, person, shape)
    _draw_mouth(img, face, person, shape)
    cv2.setRNGSeed(int(rng.integers(2**31)))  # sensor noise from OpenCV's fast generator, seeded
    noise = np.empty(img.shape, np.int16)
    cv2.randn(noise, 0, 4)
    img = cv2.add(img.astype(np.int16), noise, dtype=cv2.CV_8U)
    return cv2.GaussianBlur(img, (3, 3), 0.8)


# ----------------------------------------------------------------------------- the tree
def synthetic_names(identities: int, sessions: Sequence[str] = SESSIONS) -> list[KDEFName]:
    """All file names of a tree with ``identities`` people (females first: F01, M01, F02, ...), each photographed
    in ``sessions`` (KDEF's A and B, or one of them)."""
    if not 1 <= identities <= MAX_IDENTITIES:
        raise UserError(
            f"--identities must be between 1 and {MAX_IDENTITIES} (KDEF has 35 women and 35 men); got {identities}"
        )
    if not sessions or any(session not in SESSIONS for session in sessions) or len(set(sessions)) < len(sessions):
        raise UserError(f"sessions must be some of {', '.join(SESSIONS)}, each once; got {list(sessions)}")
    people = [("F" if i % 2 == 0 else "M", i // 2 + 1) for i in range(identities)]
    return [
        KDEFName(session, gender, number, expression, angle)
        for gender, number in people
        for session in sorted(sessions)
        for expression in EXPRESSIONS
        for angle in ANGLES
    ]


def kdef_dir(out: str | Path) -> Path:
    """Where the images of a generated tree live: ``<out>/KDEF_and_AKDEF/KDEF``."""
    return Path(out) / "KDEF_and_AKDEF" / "KDEF"


def draw_all(draw: Any, jobs: Sequence[Any], workers: int, description: str, *, chunksize: int) -> None:
    """``draw`` every job (each writes its own files), on ``workers`` processes (0: the CPUs, at most 8),
    with a progress bar; the synthetic KDEF and RaFD generators share it."""
    workers = workers or min(len(os.sched_getaffinity(0)), 8)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for _ in track(pool.map(draw, jobs, chunksize=chunksize), total=len(jobs), description=description):
                pass
    else:
        for job in track(jobs, total=len(jobs), description=description):
            draw(job)


def _write_one(args: tuple[KDEFName, str, int]) -> None:
    name, folder, seed = args
    rgb = render_face(name, seed)
    quality = 88 + zlib.crc32(name.filename.encode()) % 8
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
        raise RuntimeError(f"could not encode {name.filename}")
    atomic_write_bytes(Path(folder) / name.folder / name.filename, buf.tobytes())


def _read_manifest(manifest: Path) -> dict | None:
    try:
        return json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _clear_generated_tree(images: Path, manifest: Path) -> None:
    """Remove an earlier generated tree (another size or seed, or an interrupted one) before writing anew.

    A folder that holds images but no manifest was not written by this generator (e.g. a real KDEF copy
    given as ``data.root`` of ``data=kdef_synthetic``): it is never touched; :class:`UserError` says so.
    """
    if not images.is_dir() or not any(images.iterdir()):
        return
    if not manifest.exists():
        raise UserError(
            f"{images} holds files but no {MANIFEST}: it is not a tree written by the synthetic generator, "
            "and nothing is written into it; give data=kdef_synthetic an empty or generated data.root"
        )
    shutil.rmtree(images)


def generate(
    out: str | Path,
    identities: int = 20,
    *,
    sessions: Sequence[str] = SESSIONS,
    seed: int = 0,
    workers: int | None = None,
    force: bool = False,
) -> Path:
    """Write a synthetic KDEF tree under ``out`` unless an identical one is already there.

    Returns the ``KDEF_and_AKDEF`` folder. The manifest ``SYNTHETIC.json`` is written last, so an
    interrupted generation is redone on the next call. Processes that ask for the same tree at once
    (the jobs of a sweep) take turns on a lock file beside it: one draws, the others find it done.
    """
    names = synthetic_names(identities, sessions)
    root = Path(out) / "KDEF_and_AKDEF"
    spec = {"generator_version": GENERATOR_VERSION, "identities": identities, "seed": seed, "images": len(names)}
    if sorted(sessions) != sorted(SESSIONS):
        spec["sessions"] = sorted(sessions)  # (a tree of both sessions keeps the manifest it always had)
    if not force and _read_manifest(root / MANIFEST) == spec:
        return root  # the usual case, without the lock
    Path(out).mkdir(parents=True, exist_ok=True)
    with FileLock(Path(out) / ".KDEF_and_AKDEF.lock"):
        if force or _read_manifest(root / MANIFEST) != spec:  # not drawn by another process meanwhile
            _draw(out, names, spec, workers=workers)
    return root


def _draw(out: str | Path, names: list[KDEFName], spec: dict, *, workers: int | None) -> None:
    images = kdef_dir(out)
    manifest = images.parent / MANIFEST
    _clear_generated_tree(images, manifest)
    images.mkdir(parents=True, exist_ok=True)
    atomic_write_text(manifest, json.dumps({**spec, "complete": False}, indent=2))  # ours, while it is written
    jobs = [(n, str(images), spec["seed"]) for n in names]
    draw_all(_write_one, jobs, workers, f"Drawing {len(names)} synthetic KDEF faces", chunksize=8)
    atomic_write_text(manifest, json.dumps(spec, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lanmsff.data.synthetic",
        description="Write a synthetic dataset in the exact KDEF layout (562x762 JPEGs, KDEF file names).",
    )
    parser.add_argument("--out", default="data/kdef_synthetic", help="output folder (default: %(default)s)")
    parser.add_argument("--identities", type=int, default=20, help="number of people, 1-70")
    parser.add_argument(
        "--sessions", nargs="+", default=list(SESSIONS), help="photo sessions of each person (default: A B)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    parser.add_argument("--force", action="store_true", help="regenerate even if an identical tree exists")
    args = parser.parse_args(argv)
    try:
        root = generate(
            args.out, args.identities, sessions=args.sessions, seed=args.seed, workers=args.workers, force=args.force
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    images = len(synthetic_names(args.identities, args.sessions))
    print(f"Synthetic KDEF tree with {images} images (seed {args.seed}): {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
