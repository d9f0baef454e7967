"""Robot-model facts a controller can use: where a body point is and how joints move it.

The controller runs in a separate process that only sees the observation, so the
kinematics travel as observation fields, computed here from MuJoCo's own model
(``mj_jac``), never re-derived by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mujoco
import numpy as np


def body_com_jacobian(model: Any, data: Any, body: str, dofs: Sequence[int], rows: int = 3) -> np.ndarray:
    """The Jacobian of ``body``'s centre of mass w.r.t. the velocities of ``dofs``.

    ``rows`` keeps the first x, y(, z) rows: ``d(point)/dt = J @ qvel[dofs]`` for those
    coordinates. It uses the kinematics of ``data`` as they are (the same ones Gymnasium
    reports ``get_body_com`` from), so the point and its Jacobian agree.
    """
    body_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body)
    if body_id < 0:
        raise ValueError(f"the model has no body named {body!r}")
    position_jacobian = np.zeros((3, model.nv))
    mujoco.mj_jacBodyCom(model, data, position_jacobian, None, body_id)
    return position_jacobian[:rows, list(dofs)].copy()
