"""Darknet's optimiser settings and learning-rate policy, read from a cfg's ``[net]`` section.

Why the cfg decides: a Darknet user tuned ``learning_rate``, ``momentum``, ``decay``, ``burn_in``
and ``policy``/``steps``/``scales`` for their model; training it in PyTorch with other defaults
would be a different experiment. The rate follows Darknet's ``get_current_rate``: during
``burn_in`` it rises as ``lr * (i / burn_in) ** power``; then the policy applies.

One deliberate difference: Darknet counts ``steps`` in iterations of a run of ``max_batches``
iterations (500 200 for COCO), while a run here lasts ``--epochs``. The policy is therefore
compressed: iteration ``i`` of a run of ``T`` iterations is evaluated as Darknet iteration
``i * max_batches / T``, so a ``steps=400000,450000`` schedule drops the rate at 80 % and 90 %
of the run, as it would in Darknet. ``burn_in`` is kept in iterations (it is about the first
updates of an untrained net, not a fraction of the run) but capped at a tenth of the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cfg_codegen.errors import CfgError
from cfg_codegen.layers import Network
from cfg_codegen.parser import section_options

POLICIES = ("constant", "steps", "step", "poly", "exp", "sig")
BURN_IN_CAP = 0.1  # at most this fraction of the run warms up


@dataclass(frozen=True)
class DarknetSchedule:
    """The optimiser and learning-rate keys of ``[net]`` (Darknet's defaults where absent)."""

    learning_rate: float = 0.001
    momentum: float = 0.9
    decay: float = 0.0001
    burn_in: int = 0
    power: float = 4.0
    policy: str = "constant"
    steps: tuple[int, ...] = ()
    scales: tuple[float, ...] = ()
    step: int = 1
    scale: float = 1.0
    gamma: float = 1.0
    max_batches: int = 0

    @classmethod
    def from_network(cls, network: Network) -> "DarknetSchedule":
        opts = section_options(network)
        policy_opt = opts.raw("policy")
        policy = policy_opt.value.strip().lower() if policy_opt else "constant"
        if policy not in POLICIES:
            raise CfgError(f"{opts.origin.describe('policy', policy_opt.line)}: policy '{policy_opt.value}' is not "
                           f"one edgeprune trains with ({', '.join(POLICIES)})")
        steps = opts.ints("steps")
        scales = opts.floats("scales")
        steps_t, scales_t = (steps[0] if steps else ()), (scales[0] if scales else ())
        if policy == "steps" and len(steps_t) != len(scales_t):
            where = opts.origin.describe("scales", scales[1].line if scales else None)
            raise CfgError(f"{where}: policy=steps needs one scale per step, got {len(steps_t)} steps and "
                           f"{len(scales_t)} scales")
        return cls(learning_rate=opts.float("learning_rate", 0.001), momentum=opts.float("momentum", 0.9),
                   decay=opts.float("decay", 0.0001), burn_in=opts.int("burn_in", 0, minimum=0),
                   power=opts.float("power", 4.0), policy=policy, steps=steps_t, scales=scales_t,
                   step=opts.int("step", 1, minimum=1), scale=opts.float("scale", 1.0),
                   gamma=opts.float("gamma", 1.0), max_batches=opts.int("max_batches", 0, minimum=0))

    def warmup_iterations(self, total: int, override: int | None = None) -> int:
        """Burn-in length of a run of ``total`` iterations: ``override``, else ``burn_in`` capped."""
        if override is not None:
            return override
        return min(self.burn_in, max(1, int(total * BURN_IN_CAP))) if self.burn_in else 0

    def rate(self, iteration: int, total: int, learning_rate: float | None = None,
             burn_in: int | None = None) -> float:
        """Learning rate of ``iteration`` (0-based) in a run of ``total`` iterations."""
        lr = self.learning_rate if learning_rate is None else learning_rate
        warm = self.warmup_iterations(total, burn_in)
        if iteration < warm:
            return lr * (iteration / warm) ** self.power
        b = iteration * self.max_batches / total if self.max_batches else float(iteration)
        if self.policy == "steps":
            for boundary, factor in zip(self.steps, self.scales):
                if boundary > b:
                    break
                lr *= factor
            return lr
        if self.policy == "step":
            return lr * self.scale ** int(b // self.step)
        if self.policy == "poly":
            horizon = self.max_batches or total
            return lr * max(0.0, 1.0 - b / horizon) ** self.power
        if self.policy == "exp":
            return lr * self.gamma ** b
        if self.policy == "sig":
            return lr / (1.0 + math.exp(self.gamma * (b - self.step)))
        return lr
