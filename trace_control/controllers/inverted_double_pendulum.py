"""Starting controller for InvertedDoublePendulum: a linear state feedback with zero gains."""

from __future__ import annotations

from trace_control.controllers.base import Controller
from trace_control.trace import bundle, node


class InvertedDoublePendulumController(Controller):
    """Pushes the cart of InvertedDoublePendulum-v5."""

    task = "inverted-double-pendulum"

    def __init__(self):
        self.gains = node([0.0] * 6, name="gains", trainable=True,
                          description="feedback gains on [cart_pos, a1, a2, cart_vel, w1, w2]")

    @bundle(trainable=True)
    def controller(self, obs):
        """Map an observation to the cart force for InvertedDoublePendulum.

        obs: a dict of numpy float64 arrays: cart_pos, pole_angles [a1, a2], cart_vel, pole_angular_vels [w1, w2]
        and tip_height.
        Returns [force] with force in [-1, 1].
        """
        state = [obs["cart_pos"], *obs["pole_angles"], obs["cart_vel"], *obs["pole_angular_vels"]]
        return [sum(g * x for g, x in zip(self.gains, state))]
