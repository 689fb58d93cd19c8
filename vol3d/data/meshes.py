"""Loading and validating triangle meshes.

:func:`load_mesh` reads any format trimesh reads (scenes are concatenated into one mesh) and has its
own fast OFF reader, because ModelNet's OFF files often glue the counts to the keyword
(first line ``OFF123 456 0`` instead of ``OFF`` then ``123 456 0``), which trimesh rejects.
Polygon faces are triangulated as fans ``(p0, p_i, p_{i+1})``.

:func:`check_mesh` is the one validation rule: a mesh must have vertices, faces, finite coordinates,
in-range face indices, a non-zero extent and a non-zero surface area. Every failure is a
:class:`vol3d.errors.MeshError` whose ``reason`` is a short one-liner (the pipeline lists them).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import trimesh

from ..errors import MeshError

__all__ = ["load_mesh", "check_mesh", "read_off"]

# [ST][C][N]OFF, optionally followed directly by the counts (ModelNet's broken header).
_OFF_HEADER = re.compile(r"^(?:ST)?C?N?OFF(.*)$")


def load_mesh(path) -> trimesh.Trimesh:
    """Read a triangle mesh from ``path`` and validate it with :func:`check_mesh`.

    Args:
        path: a file in any format trimesh loads (``.off`` is read by :func:`read_off`).

    Returns:
        a :class:`trimesh.Trimesh` (duplicate vertices merged, like ``trimesh.load``).

    Raises:
        MeshError: unreadable, empty, point-cloud-only or degenerate file (``reason`` says which).
    """
    path = Path(path)
    if not path.is_file():
        raise MeshError(path, "no such file" if not path.exists() else "not a file")
    if path.suffix.lower() == ".off":
        vertices, faces = read_off(path)
        mesh = trimesh.Trimesh(vertices, faces, process=False)
    else:
        mesh = _load_with_trimesh(path)
    check_mesh(mesh, path)
    mesh.merge_vertices()
    return mesh


def _load_with_trimesh(path: Path) -> trimesh.Trimesh:
    """Load a non-OFF file with trimesh; scenes are concatenated, non-meshes raise MeshError."""
    try:
        loaded = trimesh.load(str(path), process=False)
    except Exception as exc:  # trimesh raises many exception types for bad files
        raise MeshError(path, f"unreadable ({type(exc).__name__}: {_first_line(exc)})") from None
    if isinstance(loaded, trimesh.Scene):  # geometry placed by the scene graph's transforms
        loaded = loaded.dump() if loaded.geometry else []
    if isinstance(loaded, list):
        meshes = [g for g in loaded if isinstance(g, trimesh.Trimesh)]
        if not meshes and any(isinstance(g, trimesh.PointCloud) for g in loaded):
            raise MeshError(path, "point cloud only (no faces)")
        loaded = trimesh.util.concatenate(meshes) if meshes else trimesh.Trimesh()
    if isinstance(loaded, trimesh.PointCloud):
        raise MeshError(path, "point cloud only (no faces)")
    if not isinstance(loaded, trimesh.Trimesh):
        raise MeshError(path, f"not a triangle mesh ({type(loaded).__name__})")
    return loaded


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:120] if text else "no message"


def check_mesh(mesh, source) -> trimesh.Trimesh:
    """Validate an in-memory mesh; return it unchanged or raise :class:`MeshError`.

    Checks, in order: a Trimesh, at least one vertex, at least one face, finite vertex coordinates,
    face indices in range, non-zero extent of the face vertices, non-zero total area (relative to
    the extent: ``area <= 1e-12 * extent**2`` counts as zero, e.g. all vertices collinear).
    """
    if not isinstance(mesh, trimesh.Trimesh):
        raise MeshError(source, f"not a triangle mesh ({type(mesh).__name__})")
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces)
    if len(vertices) == 0:
        raise MeshError(source, "empty mesh (no vertices)")
    if len(faces) == 0:
        raise MeshError(source, "point cloud only (no faces)")
    if not np.isfinite(vertices).all():
        raise MeshError(source, "non-finite vertex coordinates")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise MeshError(source, "face index out of range")
    corners = np.take(np.ascontiguousarray(vertices.T), faces.T, axis=1)  # (axis, corner, F)
    extent = float((corners.reshape(3, -1).max(1) - corners.reshape(3, -1).min(1)).max())
    if extent == 0.0:
        raise MeshError(source, "degenerate mesh (zero extent)")
    e1, e2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    cross = (e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0])
    area = 0.5 * np.sqrt(cross[0] ** 2 + cross[1] ** 2 + cross[2] ** 2).sum()
    if not area > 1e-12 * extent**2:
        raise MeshError(source, "degenerate mesh (zero surface area)")
    return mesh


def read_off(path) -> tuple[np.ndarray, np.ndarray]:
    """Parse an OFF file into ``vertices (V, 3) float64`` and triangle ``faces (F, 3) int64``.

    Accepts ``OFF``, ``COFF``, ``NOFF``, ``STOFF`` headers, the counts on the header line itself
    (``OFF123 456 0``), ``#`` comments, extra per-vertex / per-face values (colours, normals: only
    the first 3 coordinates / the listed indices are used), and polygons (fan-triangulated).
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise MeshError(path, f"unreadable ({exc.strerror or type(exc).__name__})") from None
    if "#" in text:
        text = "\n".join(line.split("#", 1)[0] for line in text.split("\n"))
    lines = [line for line in (raw.strip() for raw in text.split("\n")) if line]
    if not lines:
        raise MeshError(path, "empty file")
    match = _OFF_HEADER.match(lines[0])
    if match is None:
        raise MeshError(path, "not an OFF file (bad header)")
    rest, start = match.group(1).strip(), 1
    if not rest:  # standard layout: counts on the next line
        if len(lines) < 2:
            raise MeshError(path, "missing vertex/face counts")
        rest, start = lines[1], 2
    try:
        counts = [int(tok) for tok in rest.split()[:3]]
        n_vertices, n_faces = counts[0], counts[1]
    except (ValueError, IndexError):
        raise MeshError(path, f"bad vertex/face counts {rest[:40]!r}") from None
    if n_vertices < 0 or n_faces < 0:
        raise MeshError(path, "negative vertex/face counts")
    if len(lines) < start + n_vertices + n_faces:
        raise MeshError(path, f"truncated (expected {n_vertices} vertices and {n_faces} faces)")
    vertex_lines = lines[start : start + n_vertices]
    face_lines = lines[start + n_vertices : start + n_vertices + n_faces]
    vertices = _parse_table(vertex_lines, path, "vertex")
    if vertices.shape[1] < 3:
        raise MeshError(path, "vertex lines with fewer than 3 coordinates")
    vertices = vertices[:, :3]
    faces = _parse_faces(face_lines, path) if n_faces else np.zeros((0, 3), np.int64)
    if len(faces) and (faces.min() < 0 or faces.max() >= n_vertices):
        raise MeshError(path, "face index out of range")
    return vertices, faces


def _parse_table(lines: list[str], path, what: str) -> np.ndarray:
    """Numbers of ``lines`` as a 2D float array ``(len(lines), k)``; ragged rows keep the first k."""
    if not lines:
        return np.zeros((0, 3))
    width = len(lines[0].split())
    flat = _numbers(" ".join(lines), path, what)
    if flat.size == width * len(lines):
        return flat.reshape(len(lines), width)
    rows = [line.split() for line in lines]  # ragged: rare, so a Python loop is fine
    width = min(len(r) for r in rows)
    return np.array([_numbers(" ".join(r[:width]), path, what) for r in rows]).reshape(len(rows), width)


def _numbers(text: str, path, what: str, dtype=np.float64) -> np.ndarray:
    """All whitespace-separated numbers of ``text`` (np.fromstring: ~5x faster than split())."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # numpy's signal for unparsable text
        try:
            return np.fromstring(text, dtype=dtype, sep=" ")
        except (DeprecationWarning, ValueError):
            pass
    if dtype is not np.float64:  # e.g. float colours after the indices: parse as floats
        return _numbers(text, path, what)
    raise MeshError(path, f"non-numeric {what} data")


def _parse_faces(lines: list[str], path) -> np.ndarray:
    """Face lines ``n i_1 ... i_n [extras]`` -> fan-triangulated ``(F, 3) int64``."""
    width = len(lines[0].split())
    flat = _numbers(" ".join(lines), path, "face", dtype=np.int64)
    table = flat.reshape(len(lines), width) if flat.size == width * len(lines) else None
    if table is not None and (table[:, 0] == table[0, 0]).all() and 3 <= table[0, 0] < width:
        polygons = [table[:, 1 : 1 + int(table[0, 0])]]  # fast path: all faces have the same size
    else:
        polygons = _ragged_polygons(lines, path)
    tris = [_fan(p, path) for p in polygons]
    return np.concatenate(tris) if tris else np.zeros((0, 3), np.int64)


def _ragged_polygons(lines: list[str], path) -> list[np.ndarray]:
    """Group faces of mixed sizes by size: a list of ``(n_faces_of_size_n, n)`` index arrays."""
    groups: dict[int, list[list[str]]] = {}
    for line in lines:
        tokens = line.split()
        try:
            n = int(tokens[0])
        except ValueError:
            raise MeshError(path, f"bad face line {line[:40]!r}") from None
        if n < 3 or len(tokens) < n + 1:
            raise MeshError(path, f"bad face line {line[:40]!r}")
        groups.setdefault(n, []).append(tokens[1 : n + 1])
    return [_numbers(" ".join(" ".join(r) for r in rows), path, "face").reshape(len(rows), n) for n, rows in groups.items()]


def _fan(polygons: np.ndarray, path) -> np.ndarray:
    """Polygons ``(m, n)`` (float indices) -> fan triangles ``(m * (n - 2), 3) int64``."""
    if not (polygons == np.round(polygons)).all():
        raise MeshError(path, "non-integer face indices")
    idx = polygons.astype(np.int64)
    n = idx.shape[1]
    i = np.arange(1, n - 1)
    tris = np.stack([np.broadcast_to(idx[:, :1], (len(idx), n - 2)), idx[:, i], idx[:, i + 1]], axis=-1)
    return tris.reshape(-1, 3)
