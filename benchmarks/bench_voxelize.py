"""Benchmark: vol3d's solid voxelizer against trimesh ``mesh.voxelized(pitch).fill()``.

Side by side in one run, on the real meshes of ``--meshes`` (default ``../shared/data/meshes``;
skipped when absent) plus trimesh primitives (box, cylinder, capsule, icosphere, annulus):

- speed: meshes/s (median over ``--repeats`` passes over all meshes) at 32^3 and 64^3, and the
  ratio vol3d / trimesh. trimesh gets the same voxel size (pitch) as vol3d's default sphere fit.
- accuracy on watertight meshes (randomly rotated primitives and a compound of disjoint parts),
  against ``mesh.contains`` at the voxel centres (the exact reference):
  ``IoU(solid, contains | surface)`` (solid is inside-or-surface, so the reference is too),
  ``IoU(centre test, contains)`` (vol3d's inside vote alone) and the plain ``IoU(solid, contains)``.
- for information, IoU of vol3d solid against trimesh fill on the real meshes (not watertight:
  trimesh's hole filling fails on open meshes; its grid is also offset by up to half a voxel).

Writes ``benchmarks/results/voxelize.json`` (atomically) and prints a markdown table.

    python benchmarks/bench_voxelize.py [--repeats 3] [--meshes DIR] [--resolutions 32 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import trimesh

from vol3d.data.meshes import load_mesh
from vol3d.files import write_text_atomic
from vol3d.data.voxelize import inside_votes, normalize_mesh, voxelize
from vol3d.rotations import sample_rotations

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MESHES = REPO.parent / "shared" / "data" / "meshes"
MESH_SUFFIXES = (".off", ".obj", ".stl", ".ply", ".glb", ".gltf")


def primitives() -> dict[str, trimesh.Trimesh]:
    """Watertight built-in-like meshes: trimesh primitives and a compound of disjoint parts."""
    box = trimesh.creation.box((1.0, 2.0, 3.0))
    compound = trimesh.util.concatenate(
        [trimesh.creation.box((1.0, 1.0, 1.0)), trimesh.creation.icosphere(2, radius=0.6).apply_translation((0, 0, 1.5))]
    )
    return {
        "box": box,
        "cylinder": trimesh.creation.cylinder(radius=0.5, height=2.0, sections=48),
        "capsule": trimesh.creation.capsule(height=1.0, radius=0.5),
        "icosphere": trimesh.creation.icosphere(subdivisions=3),
        "annulus": trimesh.creation.annulus(r_min=0.3, r_max=1.0, height=0.5),
        "box+sphere": compound,
    }


def real_meshes(folder: Path) -> dict[str, trimesh.Trimesh]:
    if not folder.is_dir():
        print(f"[skip] no real meshes: {folder} is absent")
        return {}
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in MESH_SUFFIXES)
    return {p.name: load_mesh(p) for p in files}


def sphere_pitch(mesh: trimesh.Trimesh, resolution: int) -> float:
    """The voxel size (mesh units) of vol3d's default sphere fit, so both tools use the same grid."""
    _, transform = normalize_mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), resolution)
    return 1.0 / np.linalg.norm(transform[:3, 0])


def time_pass(fn, meshes: dict, repeats: int) -> tuple[float, dict]:
    """Median meshes/s over ``repeats`` passes, and per-mesh median seconds."""
    rates, per_mesh = [], {name: [] for name in meshes}
    for _ in range(repeats):
        start = time.perf_counter()
        for name, mesh in meshes.items():
            t = time.perf_counter()
            fn(mesh)
            per_mesh[name].append(time.perf_counter() - t)
        rates.append(len(meshes) / (time.perf_counter() - start))
    return float(np.median(rates)), {k: float(np.median(v)) for k, v in per_mesh.items()}


def centre_points(transform: np.ndarray, resolution: int) -> np.ndarray:
    """Mesh coordinates of all voxel centres, ``(R^3, 3)`` in ``v.reshape(-1)`` order."""
    idx = np.stack(np.meshgrid(*[np.arange(resolution)] * 3, indexing="ij"), -1).reshape(-1, 3)
    inverse = np.linalg.inv(transform)
    return idx @ inverse[:3, :3].T + inverse[:3, 3]


def contains(mesh: trimesh.Trimesh, points: np.ndarray, chunk: int = 16384) -> np.ndarray:
    return np.concatenate([mesh.contains(points[i : i + chunk]) for i in range(0, len(points), chunk)])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def watertight_accuracy(meshes: dict, resolution: int, seed: int = 0) -> dict:
    """IoUs against ``mesh.contains`` for each watertight mesh under a random rotation."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, mesh in meshes.items():
        if not mesh.is_watertight:
            continue
        q = sample_rotations(1, "so3", rng)[0]
        solid, transform = voxelize(mesh, resolution, "solid", rotation=q, return_transform=True)
        surface = voxelize(mesh, resolution, "surface", rotation=q)
        reference = contains(mesh, centre_points(transform, resolution)).reshape(solid.shape)
        grid_vertices, _ = normalize_mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), resolution, rotation=q)
        centre_test = inside_votes(grid_vertices[np.asarray(mesh.faces)], resolution) >= 2
        out[name] = {
            "iou_solid_vs_contains_or_surface": iou(solid, reference | surface.astype(bool)),
            "iou_centre_test_vs_contains": iou(centre_test, reference),
            "iou_solid_vs_contains": iou(solid, reference),
        }
    return out


def trimesh_fill(mesh: trimesh.Trimesh, resolution: int):
    return mesh.voxelized(sphere_pitch(mesh, resolution)).fill()


def iou_vs_trimesh(mesh: trimesh.Trimesh, resolution: int) -> float:
    """IoU of vol3d solid and trimesh fill on the same grid.

    trimesh puts voxel centres at integer multiples of the pitch, so the mesh is first shifted by
    ``delta`` to make vol3d's voxel centres land there too."""
    solid, transform = voxelize(mesh, resolution, "solid", return_transform=True)
    pitch = sphere_pitch(mesh, resolution)
    origin = np.linalg.solve(transform, [0.0, 0.0, 0.0, 1.0])[:3]  # mesh position of voxel (0,0,0)
    delta = -np.mod(origin, pitch)
    points = trimesh_fill(mesh.copy().apply_translation(delta), resolution).points - delta
    idx = np.rint(points @ transform[:3, :3].T + transform[:3, 3]).astype(int)
    idx = idx[((idx >= 0) & (idx < resolution)).all(1)]
    theirs = np.zeros_like(solid, dtype=bool)
    theirs[tuple(idx.T)] = True
    return iou(solid, theirs)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--meshes", type=Path, default=DEFAULT_MESHES)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "voxelize.json")
    args = parser.parse_args(argv)

    sets = {"real": real_meshes(args.meshes), "primitives": primitives()}
    sets = {k: v for k, v in sets.items() if v}
    everything = {name: m for meshes in sets.values() for name, m in meshes.items()}
    rows, results = [], {"resolutions": {}, "meshes": {k: {n: len(m.faces) for n, m in v.items()} for k, v in sets.items()}}
    for resolution in args.resolutions:
        res = {}
        for set_name, meshes in sets.items():
            ours, ours_each = time_pass(lambda m: voxelize(m, resolution), meshes, args.repeats)
            theirs, theirs_each = time_pass(lambda m: trimesh_fill(m, resolution), meshes, args.repeats)
            res[set_name] = {
                "vol3d_meshes_per_s": ours,
                "trimesh_meshes_per_s": theirs,
                "ratio": ours / theirs,
                "vol3d_s_per_mesh": ours_each,
                "trimesh_s_per_mesh": theirs_each,
            }
            rows.append((resolution, set_name, len(meshes), ours, theirs))
        # all meshes: total count over the summed median pass times of the sets
        ours, theirs = (len(everything) / sum(len(sets[k]) / res[k][key] for k in sets) for key in ("vol3d_meshes_per_s", "trimesh_meshes_per_s"))
        res["all"] = {"vol3d_meshes_per_s": ours, "trimesh_meshes_per_s": theirs, "ratio": ours / theirs}
        rows.append((resolution, "all", len(everything), ours, theirs))
        res["watertight_accuracy"] = watertight_accuracy(sets["primitives"], resolution)
        if "real" in sets:
            res["iou_vs_trimesh_fill_real"] = {n: iou_vs_trimesh(m, resolution) for n, m in sets["real"].items()}
        results["resolutions"][str(resolution)] = res
    results["repeats"] = args.repeats
    results["machine"] = {"python": platform.python_version(), "cpu_count": os.cpu_count(), "numpy": np.__version__, "trimesh": trimesh.__version__}
    write_text_atomic(args.out, json.dumps(results, indent=2) + "\n")
    print(format_table(rows, results))
    print(f"\nwrote {args.out}")
    return results


def format_table(rows, results) -> str:
    lines = [
        "| R | meshes | n | vol3d solid meshes/s | trimesh fill meshes/s | ratio |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r} | {s} | {n} | {a:.1f} | {b:.2f} | {a / b:.1f}x |" for r, s, n, a, b in rows]
    lines += ["", "| R | watertight mesh (random rotation) | IoU(solid, contains or surface) | IoU(centre test, contains) | IoU(solid, contains) |", "|---|---|---|---|---|"]
    for r, res in results["resolutions"].items():
        for name, acc in res["watertight_accuracy"].items():
            lines.append(
                f"| {r} | {name} | {acc['iou_solid_vs_contains_or_surface']:.4f} | {acc['iou_centre_test_vs_contains']:.4f} | {acc['iou_solid_vs_contains']:.4f} |"
            )
    if any("iou_vs_trimesh_fill_real" in res for res in results["resolutions"].values()):
        lines += ["", "| R | real mesh (not watertight) | IoU(vol3d solid, trimesh fill), information only |", "|---|---|---|"]
        for r, res in results["resolutions"].items():
            for name, value in res.get("iou_vs_trimesh_fill_real", {}).items():
                lines.append(f"| {r} | {name} | {value:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
