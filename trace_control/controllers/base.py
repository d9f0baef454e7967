"""The shape every controller shares: a Module whose ``controller(obs)`` returns an action."""

from __future__ import annotations

from typing import Any

from trace_control.trace import Module


class Controller(Module):
    """A traced policy. Subclasses define ``controller(self, obs)`` as a trainable bundle.

    Calling the object (or its ``forward``) runs ``controller``; exported files keep
    the same shape, so ``load()(obs)`` works on them too.
    """

    task = ""

    def forward(self, obs: Any) -> Any:
        return self.controller(obs)
