"""Study grids: the set of recipes a pre-training study trains, read from YAML (or a dict).

Schema (every top-level key optional, but the grid must yield at least one recipe)::

    # examples/study_grid.yaml
    defaults:            # recipe keys shared by every recipe (see Recipe for all keys)
      arch: small_cnn
      epochs: 6
    recipes:             # an explicit list; each item is a mapping of recipe keys (``name`` optional)
      - {loss: ce}
      - {name: supcon-mlp, loss: supcon, head_layers: 2}
    product:             # the cartesian product of axes (a mapping of key -> list of values),
      loss: [ce, mse]    # or a list of such mappings (several sub-grids)
      head_layers: [0, 1, 2]

Recipes are ``defaults`` updated by the item, in the order the sections and items are written. Names default to a
readable summary of the keys given per recipe (``"mse-h2-aug3-adv2"``); names must be unique, and two recipes with
the same training settings (same fingerprint) are an error too. Unknown top-level keys, unknown recipe keys (with the
closest valid key), bad values and an empty grid raise :class:`~nctransfer.exceptions.InputValueError`.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from nctransfer.exceptions import InputValueError, NotFoundError
from nctransfer.pretrain.recipe import Recipe

GRID_KEYS = ("defaults", "recipes", "product")


@dataclass
class StudyGrid:
    """An ordered list of :class:`Recipe` with the raw specification it came from."""

    recipes: list[Recipe]
    spec: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.recipes)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.recipes)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.recipes]

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], *, where: str = "grid") -> "StudyGrid":
        """Expand a grid mapping (see the module docstring)."""
        if not isinstance(spec, Mapping):
            raise InputValueError(f"{where}: a study grid must be a mapping with keys {list(GRID_KEYS)}; got "
                                  f"{type(spec).__name__}.")
        unknown = sorted(set(map(str, spec)) - set(GRID_KEYS))
        if unknown:
            raise InputValueError(f"{where}: unknown top-level key(s) {unknown}; valid keys: {list(GRID_KEYS)} "
                                  "(recipe keys such as 'loss' go under 'defaults', 'recipes' or 'product').")
        defaults = spec.get("defaults") or {}
        if not isinstance(defaults, Mapping):
            raise InputValueError(f"{where}: 'defaults' must be a mapping of recipe keys; got {defaults!r}.")
        if "name" in defaults:
            raise InputValueError(f"{where}: 'defaults' cannot set 'name' (names must be unique per recipe).")
        items: list[tuple[str, dict[str, Any]]] = []
        for section in [k for k in spec if k in ("recipes", "product")]:  # in the order written
            if section == "recipes":
                items += _explicit_items(spec.get("recipes") or [], where)
            else:
                items += _product_items(spec.get("product") or [], where)
        if not items:
            raise InputValueError(f"{where}: the grid is empty: give at least one recipe under 'recipes' or an axis "
                                  "under 'product'.")
        recipes = []
        for label, item in items:
            merged = {**defaults, **item}
            recipes.append(Recipe.from_dict(merged, where=label, name_keys=list(item)))
        _check_unique(recipes, where)
        return cls(recipes, dict(spec))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "StudyGrid":
        """Read a grid YAML file (see the module docstring)."""
        p = Path(path)
        if not p.is_file():
            raise NotFoundError(f"grid: file {str(p)!r} does not exist.")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise InputValueError(f"grid: {p} is not valid YAML: {exc}") from None
        if data is None:
            raise InputValueError(f"grid: {p} is empty: give at least one recipe under 'recipes' or 'product'.")
        return cls.from_dict(data, where=f"grid {p.name}")

    def to_dict(self) -> dict[str, Any]:
        """The expanded grid as ``{"recipes": [recipe dicts]}`` (re-readable by :meth:`from_dict`)."""
        return {"recipes": [r.to_dict() for r in self.recipes]}


def _explicit_items(explicit: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(explicit, list):
        raise InputValueError(f"{where}: 'recipes' must be a list of mappings; got {type(explicit).__name__}.")
    items = []
    for i, item in enumerate(explicit):
        if not isinstance(item, Mapping):
            raise InputValueError(f"{where}: recipes[{i}] must be a mapping of recipe keys; got {item!r}.")
        items.append((f"{where}: recipes[{i}]", dict(item)))
    return items


def _product_items(products: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    if isinstance(products, Mapping):
        products = [products]
    if not isinstance(products, list):
        raise InputValueError(f"{where}: 'product' must be a mapping of key -> list of values, or a list of "
                              f"such mappings; got {type(products).__name__}.")
    items = []
    for j, prod in enumerate(products):
        if not isinstance(prod, Mapping) or not prod:
            raise InputValueError(f"{where}: product[{j}] must be a non-empty mapping of key -> list of values; "
                                  f"got {prod!r}.")
        if "name" in prod:
            raise InputValueError(f"{where}: product[{j}] cannot vary 'name'.")
        axes = []
        for key, values in prod.items():
            if not isinstance(values, list):
                values = [values]
            if not values:
                raise InputValueError(f"{where}: product[{j}].{key} is an empty list: the product would be empty.")
            axes.append([(key, v) for v in values])
        for combo in itertools.product(*axes):
            items.append((f"{where}: product[{j}] {dict(combo)}", dict(combo)))
    return items


def _check_unique(recipes: list[Recipe], where: str) -> None:
    seen: dict[str, int] = {}
    prints: dict[str, str] = {}
    for i, r in enumerate(recipes):
        if r.name in seen:
            raise InputValueError(f"{where}: recipe name {r.name!r} is used twice (recipes {seen[r.name]} and {i}); "
                                  "give each recipe a unique 'name'.")
        seen[r.name] = i
        fp = r.fingerprint()
        if fp in prints:
            raise InputValueError(f"{where}: recipes {prints[fp]!r} and {r.name!r} have identical training settings; "
                                  "remove the duplicate.")
        prints[fp] = r.name
