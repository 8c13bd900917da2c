"""ASIC models with their nameplate figures: what the farm simulator builds rigs from, and what the fleet
sweep uses to estimate the power of firmware that does not report it (stock Antminer firmware reports
hash rate and temperatures, never watts).

Figures are the makers' nominal ones, rounded: an S19-class rig is about 95 TH/s at 34 J/TH, an S9-class
one 13.5 TH/s at 98 J/TH.

Rigs whose firmware has a power dial (LuxOS profiles, Avalon work levels, this miner's thread count) also
have an efficiency curve: what they hash at a given power. Hashing power is CMOS dynamic power, P ~ C V^2 f,
and a chip clocked down also runs at a lower voltage, so hash rate (~ f) grows slower than power:
``TH/s = nominal * (hashing watts / nominal hashing watts) ** ALPHA``. ESP-Miner's presets for the BM1397
(S17's chip) give ALPHA: quiet 1100 mV at 450 MHz against turbo 1400 mV at 750 MHz is 0.6x the hashes for
(1.1/1.4)^2 * 0.6 = 0.37x the power, ALPHA = ln 0.6 / ln 0.37 = 0.51 (acs-esp-miner, docs on presets). With
ALPHA 0.55 an S19 (Bitmain's sheet: 95 TH/s, 34.5 J/TH at stock) runs at about 31 J/TH on 70% power, and
37 J/TH on 120%: the tuned-down figures Braiins OS and LuxOS users report, and worse when overclocked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ALPHA = 0.55  # hash rate ~ hashing power ** ALPHA: see the module's docstring


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
    dial: str = ""  # the firmware's power dial: "profiles" (LuxOS), "worklevel" (Avalon), "threads" (this miner)
    min_frac: float = 1.0  # the dial's range, as fractions of the nominal draw
    max_frac: float = 1.0
    steps: int = 0  # how many settings the dial has across its range (profiles, work levels, threads)
    ramp_s: float = 60.0  # seconds to settle on a new setting
    wake_s: float = 240.0  # seconds from sleep to hashing at its setting again
    mix: float = 0.0  # share of the simulated farm with power dials (``--mix dial``)

    @property
    def watts(self) -> float:
        return self.ths * self.jth

    @property
    def min_w(self) -> float:
        return self.watts * self.min_frac

    @property
    def max_w(self) -> float:
        return self.watts * self.max_frac

    def ths_at(self, watts: float) -> float:
        """What the rig hashes drawing ``watts`` at the wall: the efficiency curve (0 at or below idle)."""
        hashing = watts - self.idle_w
        if hashing <= 0:
            return 0.0
        return self.ths * (hashing / (self.watts - self.idle_w)) ** ALPHA

    def jth_at(self, watts: float) -> float:
        ths = self.ths_at(watts)
        return watts / ths if ths else math.inf

    def settings(self) -> list[float]:
        """The draws the dial can be set to, lowest first: ``steps`` evenly across the range."""
        if not self.dial or self.steps < 2:
            return [self.watts]
        span = self.max_w - self.min_w
        return [round(self.min_w + span * i / (self.steps - 1), 1) for i in range(self.steps)]

    @property
    def label(self) -> str:
        firmware = {"bosminer": "Braiins OS", "luxminer": "LuxOS", "avalon": "Avalon"}.get(self.family, "stock")
        return f"{self.name} ({firmware})"


MODELS: tuple[Model, ...] = (
    Model("Antminer S9", "bmminer", 13.5, 98.0, 3, 63, 2, 650, 6, 40.0, False, 0.10),
    Model("Antminer S19", "bmminer", 95.0, 34.5, 3, 76, 4, 675, 1, 70.0, True, 0.30),
    Model("Antminer S19j Pro", "bmminer", 104.0, 29.5, 3, 126, 4, 525, 1, 70.0, True, 0.25),
    Model("Antminer S21", "bmminer", 200.0, 17.5, 3, 108, 4, 490, 1, 80.0, True, 0.15),
    Model("Antminer S9", "bosminer", 14.0, 89.0, 3, 63, 2, 650, 6, 40.0, False, 0.10),
    Model("Antminer S17", "bosminer", 56.0, 45.0, 3, 48, 4, 600, 1, 60.0, False, 0.10, mix=0.10),
    # firmware with a power dial; in the default farm's mix with weight 0, so seeded farms stay as they were
    Model(
        "Antminer S19", "luxminer", 95.0, 34.5, 3, 76, 4, 675, 1, 70.0, True, 0.0, "profiles", 0.55, 1.2, 14, mix=0.30
    ),
    Model(
        "Antminer S19j Pro",
        "luxminer",
        104.0,
        29.5,
        3,
        126,
        4,
        525,
        1,
        70.0,
        True,
        0.0,
        "profiles",
        0.55,
        1.2,
        14,
        mix=0.25,
    ),
    Model(
        "Antminer S21", "luxminer", 200.0, 17.5, 3, 108, 4, 490, 1, 80.0, True, 0.0, "profiles", 0.6, 1.15, 12, mix=0.15
    ),
    # Canaan's sheet for the A1246: 90 TH/s at 38 J/TH; work levels 0 (eco) to 6 (super)
    Model(
        "AvalonMiner 1246",
        "avalon",
        90.0,
        38.0,
        3,
        120,
        2,
        500,
        0,
        60.0,
        False,
        0.0,
        "worklevel",
        0.6,
        1.2,
        7,
        ramp_s=90.0,
        wake_s=300.0,
        mix=0.20,
    ),
)

_BY_NAME: dict[str, Model] = {}
for _model in MODELS:  # stock figures first: a name shared by both families estimates as stock
    _BY_NAME.setdefault(_model.name.lower(), _model)


def model_named(name: str) -> Model | None:
    """The model a firmware's own name for it denotes ("Antminer S19", "Bitmain Antminer S9"), if known."""
    key = name.strip().lower().removeprefix("bitmain ")
    return _BY_NAME.get(key)


def model_for(name: str, family: str) -> Model | None:
    """The model of this name as this firmware family runs it (its dial and range), else by name alone."""
    key = name.strip().lower().removeprefix("bitmain ")
    for model in MODELS:
        if model.family == family and model.name.lower() == key:
            return model
    return _BY_NAME.get(key)


def mix_weights(mix: str, models: tuple[Model, ...] = MODELS) -> list[float]:
    """Each model's share of a simulated farm: "stock" (on/off firmware) or "dial" (power dials)."""
    if mix not in MIXES:
        raise ValueError(f"unknown mix '{mix}' (choose {', '.join(MIXES)})")
    return [m.weight if mix == "stock" else m.mix for m in models]


MIXES = ("stock", "dial")


def estimate_watts(name: str, ths: float | None) -> float | None:
    """A rig's draw from its model's efficiency and the hash rate it reports, at least its idle draw."""
    model = model_named(name)
    if model is None or ths is None:
        return None
    return max(model.idle_w, ths * model.jth)
