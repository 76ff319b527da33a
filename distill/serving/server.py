"""The gRPC server around ``StudentDriver``: ``carla_driver_interface``'s egodriver servicer (and
its vehicle-command service, on the same port), with a drive the student cannot plan from
answered INVALID_ARGUMENT and its one-line reason; the server keeps serving."""
from __future__ import annotations

from concurrent import futures

import grpc
from carla_driver_interface.protocol import (
    add_CarlaVehicleServiceServicer_to_server,
    add_EgodriverServiceServicer_to_server,
    channel_options,
)
from carla_driver_interface.service import EgodriverServicer

from .observations import RequestError
from .policy import StudentDriver


class StudentServicer(EgodriverServicer):
    def __init__(self, driver: StudentDriver, mode: str):
        super().__init__(driver, mode)
        self.policy_name = driver.name

    def drive(self, request, context):
        try:
            return super().drive(request, context)
        except RequestError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{self.policy_name}: {e}")


def build_server(driver: StudentDriver, address: str, mode: str,
                 max_workers: int) -> tuple[grpc.Server, int]:
    """A server (not started) for ``driver`` bound to ``address`` (``host:port``, port 0 for a
    free one, or ``unix:PATH``), and its bound port (0 on a socket). OSError when it cannot
    bind."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                         options=channel_options())
    servicer = StudentServicer(driver, mode)
    add_EgodriverServiceServicer_to_server(servicer, server)
    add_CarlaVehicleServiceServicer_to_server(servicer, server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:  # grpc raises it for some addresses, answers 0 for others
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {address} (in use, or not an address of this machine)")
    return server, 0 if address.startswith("unix:") else port
