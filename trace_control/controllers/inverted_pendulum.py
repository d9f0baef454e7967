"""Starting controller for InvertedPendulum: a linear state feedback with zero gains."""

from __future__ import annotations

from trace_control.controllers.base import Controller
from trace_control.trace import bundle, node


class InvertedPendulumController(Controller):
    """Pushes the cart of InvertedPendulum-v5."""

    task = "inverted-pendulum"

    def __init__(self):
        self.gains = node([0.0, 0.0, 0.0, 0.0], name="gains", trainable=True,
                          description="feedback gains on [cart_pos, pole_angle, cart_vel, pole_angular_vel]")

    @bundle(trainable=True)
    def controller(self, obs):
        """Map an observation to the cart force for InvertedPendulum.

        obs: a dict of numpy float64 numbers: cart_pos, pole_angle, cart_vel, pole_angular_vel.
        Returns [force] with force in [-3, 3] (positive pushes the cart right).
        """
        state = [obs["cart_pos"], obs["pole_angle"], obs["cart_vel"], obs["pole_angular_vel"]]
        return [sum(g * x for g, x in zip(self.gains, state))]
