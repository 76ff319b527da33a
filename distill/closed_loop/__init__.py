"""The closed loop in the built-in world (``python -m distill.drive``, docs/closed_loop.md):
``episode`` (a scene of its own stream, the hand-over from the teacher, the steps a policy
drives), ``policies`` (a camera student, the planner, constant velocity), ``metrics`` (collisions,
red lights, routes, progress, time-to-collision, comfort and the driving score), ``runner``
(many episodes, in worker processes) and ``summary`` (per scenario and overall)."""
