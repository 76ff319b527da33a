"""A trained student as a deployable artefact (docs/deploy.md): exported to ONNX, an
AOTInductor package or TensorRT engines with a ``model_card.json`` (``export_student``;
``python -m distill.export``), and loaded back to plan (``load_student``;
``python -m distill.infer``).

- ``module``: ``DeployedStudent``, raw inputs (uint8 frames, history poses) -> plans, the graph
  every format exports; the input and output specs.
- ``onnx_format``, ``aoti_format``, ``tensorrt_format``: each format's export and runtime.
- ``card``: the model card.
- ``exporter``: checkpoint -> artefact folder; ``loading``: artefact folder -> planner.
"""
from .card import DeployError
from .exporter import FORMATS, export_student
from .loading import ExportedStudent, load_student
from .module import PRECISIONS, DeployedStudent

__all__ = ["FORMATS", "PRECISIONS", "DeployError", "DeployedStudent", "ExportedStudent",
           "export_student", "load_student"]
