"""The CT window presets (VOI center and width in Hounsfield units), defined once; no Django here.

Three places read this table: share links validate their `window_preset` against it (imaging.services.sharing),
the viewer page renders its preset buttons from it, and the viewer's JavaScript receives it through
`json_script` (the 1-6 keys and `?preset=` in page URLs name a preset by its `key`). Nothing else may restate
these numbers. A preset's key is also what a share link stores (ShareLink.window_preset, two characters at most).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class WindowPreset:
    """One preset: `key` names it in URLs, share links and on the keyboard; `label` fits a toolbar button."""

    key: str
    name: str
    label: str
    center: float
    width: float


WINDOW_PRESETS: tuple[WindowPreset, ...] = (
    WindowPreset(key="1", name="Soft tissue", label="Soft", center=40, width=400),
    WindowPreset(key="2", name="Lung", label="Lung", center=-600, width=1500),
    WindowPreset(key="3", name="Bone", label="Bone", center=480, width=2500),
    WindowPreset(key="4", name="Brain", label="Brain", center=40, width=80),
    WindowPreset(key="5", name="Liver", label="Liver", center=90, width=150),
    WindowPreset(key="6", name="Mediastinum", label="Mediast.", center=50, width=350),
)


def window_preset_get(*, key: str) -> WindowPreset | None:
    """The preset a key names, or None: only an exact key matches (not "12", not " 1")."""
    return next((preset for preset in WINDOW_PRESETS if preset.key == key), None)


def window_presets_describe() -> str:
    """The valid keys in words, for error messages: "1 to 6"."""
    return f"{WINDOW_PRESETS[0].key} to {WINDOW_PRESETS[-1].key}"


def window_presets_as_data() -> list[dict[str, str | float]]:
    """The table as plain data, for a template's `json_script` and its buttons."""
    return [asdict(preset) for preset in WINDOW_PRESETS]
