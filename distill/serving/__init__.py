"""The student served as a driving policy over AlpaSim's egodriver gRPC contract, through
``carla_driver_interface`` (the ``[serve]`` extra): ``policy.StudentDriver`` turns what the
runtime sent into a batch and the student's plan into a rig-frame trajectory
(``observations``), ``server.build_server`` serves it. The command line is ``distill.serve``;
docs/closed_loop.md."""
from __future__ import annotations

from .observations import RequestError
from .policy import StudentDriver, camera_map
from .server import build_server

__all__ = ["RequestError", "StudentDriver", "build_server", "camera_map"]
