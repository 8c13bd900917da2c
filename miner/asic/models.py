"""ASIC models with their nameplate figures: what the farm simulator builds rigs from, and what the fleet
sweep uses to estimate the power of firmware that does not report it (stock Antminer firmware reports
hash rate and temperatures, never watts).

Figures are the makers' nominal ones, rounded: an S19-class rig is about 95 TH/s at 34 J/TH, an S9-class
one 13.5 TH/s at 98 J/TH.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Model:
    name: str  # as the firmware names it in version's Type / devdetails' Model
    family: str  # "bmminer" (stock Antminer) or "bosminer" (Braiins OS, its cgminer-compatible API)
    ths: float  # nominal hash rate, TH/s
    jth: float  # nominal efficiency, J/TH
    boards: int
    chips: int  # per board
    fans: int
    frequency: int  # MHz
    chain_base: int  # the first chain's number in the firmware's keys (S9 bmminer: chain_acn6..8)
    idle_w: float  # control board and fans while not hashing
    modern: bool  # bmminer that also answers stats with "new_api" (the X19 generation on)
    weight: float  # share of the simulated farm

    @property
    def watts(self) -> float:
        return self.ths * self.jth

    @property
    def label(self) -> str:
        return f"{self.name} ({'Braiins OS' if self.family == 'bosminer' else 'stock'})"


MODELS: tuple[Model, ...] = (
    Model("Antminer S9", "bmminer", 13.5, 98.0, 3, 63, 2, 650, 6, 40.0, False, 0.10),
    Model("Antminer S19", "bmminer", 95.0, 34.5, 3, 76, 4, 675, 1, 70.0, True, 0.30),
    Model("Antminer S19j Pro", "bmminer", 104.0, 29.5, 3, 126, 4, 525, 1, 70.0, True, 0.25),
    Model("Antminer S21", "bmminer", 200.0, 17.5, 3, 108, 4, 490, 1, 80.0, True, 0.15),
    Model("Antminer S9", "bosminer", 14.0, 89.0, 3, 63, 2, 650, 6, 40.0, False, 0.10),
    Model("Antminer S17", "bosminer", 56.0, 45.0, 3, 48, 4, 600, 1, 60.0, False, 0.10),
)

_BY_NAME: dict[str, Model] = {}
for _model in MODELS:  # stock figures first: a name shared by both families estimates as stock
    _BY_NAME.setdefault(_model.name.lower(), _model)


def model_named(name: str) -> Model | None:
    """The model a firmware's own name for it denotes ("Antminer S19", "Bitmain Antminer S9"), if known."""
    key = name.strip().lower().removeprefix("bitmain ")
    return _BY_NAME.get(key)


def estimate_watts(name: str, ths: float | None) -> float | None:
    """A rig's draw from its model's efficiency and the hash rate it reports, at least its idle draw."""
    model = model_named(name)
    if model is None or ths is None:
        return None
    return max(model.idle_w, ths * model.jth)
