"""Template captions from what the renderer knows of a view: facades, storeys, shops, trees, facing.

They describe the scene, never the address: no street or neighbourhood name can appear in them.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from protocols.city.render import SHOP, Camera, Scene

COLOUR_NAMES = {
    "white": (0.92, 0.92, 0.90), "cream": (0.90, 0.86, 0.74), "yellow": (0.93, 0.84, 0.55),
    "ochre": (0.80, 0.65, 0.40), "salmon": (0.85, 0.58, 0.48), "red-brick": (0.62, 0.30, 0.22),
    "brown": (0.50, 0.38, 0.28), "light grey": (0.72, 0.72, 0.70), "dark grey": (0.42, 0.42, 0.44),
    "pale green": (0.66, 0.75, 0.62), "blue-grey": (0.55, 0.62, 0.70), "pink": (0.86, 0.68, 0.66),
}
COMPASS = ("north", "north-east", "east", "south-east", "south", "south-west", "west", "north-west")
NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
SEE_M = 60.0
TREES_M = 40.0


def in_view(origin: np.ndarray, heading_deg: float, hfov_deg: float, points: np.ndarray) -> np.ndarray:
    """[N] whether each point [N, 2] lies within the horizontal field of view of a camera at origin facing heading."""
    d = points - origin
    bearing = np.degrees(np.arctan2(d[:, 0], d[:, 1]))
    off = (bearing - heading_deg + 180.0) % 360.0 - 180.0
    return np.abs(off) <= hfov_deg / 2


class Captioner:
    """Captions views of one scene (wall midpoints and trees indexed once)."""

    def __init__(self, scene: Scene):
        self.scene = scene
        walls = scene.walls
        self.mid = (walls[:, :2] + walls[:, 2:]) / 2
        self.wall_tree = cKDTree(self.mid)
        self.tree_tree = cKDTree(scene.trees) if len(scene.trees) else None
        names = list(COLOUR_NAMES)
        albedo = scene.materials.albedo[: len(scene.heights), 0]
        palette = np.array(list(COLOUR_NAMES.values()))
        self.colour = [names[i] for i in np.argmin(((albedo[:, None] - palette[None]) ** 2).sum(-1), axis=1)]
        periods = scene.materials.v_period[: len(scene.heights)]
        self.storeys = np.clip(np.round((scene.heights - 1.0) / periods), 1, len(NUMBERS)).astype(int)
        self.shop = (scene.materials.tiles[: len(scene.heights), 1] == SHOP).any(axis=(1, 2))

    def _in_view(self, camera: Camera, points: np.ndarray) -> np.ndarray:
        return in_view(np.array([camera.east, camera.north]), camera.heading_deg, camera.hfov_deg, points)

    def caption(self, camera: Camera) -> str:
        """One sentence about the view from `camera`."""
        facing = COMPASS[int(((camera.heading_deg % 360) + 22.5) // 45) % 8]
        near = self.wall_tree.query_ball_point([camera.east, camera.north], SEE_M)
        near = np.array(sorted(near), np.int64)
        buildings: list[int] = []
        if len(near):
            seen = near[self._in_view(camera, self.mid[near])]
            order = np.argsort(np.hypot(*(self.mid[seen] - [camera.east, camera.north]).T), kind="stable")
            for b in self.scene.wall_building[seen[order]]:
                if int(b) not in buildings:
                    buildings.append(int(b))
                if len(buildings) == 3:
                    break
        trees = 0
        if self.tree_tree is not None:
            idx = np.array(sorted(self.tree_tree.query_ball_point([camera.east, camera.north], TREES_M)), np.int64)
            trees = int(self._in_view(camera, self.scene.trees[idx]).sum()) if len(idx) else 0
        if not buildings:
            text = f"A street view looking {facing} across an open space"
        else:
            colours = list(dict.fromkeys(self.colour[b] for b in buildings))
            storeys = NUMBERS[int(np.median([self.storeys[b] for b in buildings])) - 1]
            text = (f"A street view looking {facing}: {storeys}-storey {' and '.join(colours[:2])} "
                    f"{'facades' if len(buildings) > 1 else 'facade'}")
            if any(self.shop[b] for b in buildings):
                text += " with shop fronts at street level"
        if trees:
            text += ", " + ("a tree" if trees == 1 else "trees") + " along the street"
        return text + "."
