"""The ops of ``distill``, each in its own module with its plain-PyTorch reference:
``normalize_frames`` and ``unicycle_rollout`` (compiled, ``torch.ops.distill.*`` from the extension
``distill._C``: csrc/, schemas in csrc/library.cpp) and ``info_nce`` (Triton, ``info_nce_triton``,
imported at its first use). This package only re-exports them.

Importing it loads ``distill._C`` (``_ext``) and registers every op's fake kernel, for
torch.compile and meta tensors: csrc/library.cpp names this package as the place to import for
them (``set_python_module("distill.ops")``).

Each op's function shadows its module of the same name as an attribute of this package
(``distill.ops.info_nce`` is the function); ``from distill.ops.info_nce import select_backend``
and ``importlib.import_module("distill.ops.info_nce")`` reach the module.
"""
from ..constants import IMAGENET_MEAN, IMAGENET_STD
from .info_nce import info_nce, info_nce_reference
from .normalize_frames import normalize_frames, normalize_frames_reference
from .unicycle_rollout import (ROLLOUTS, unicycle_cpu_dispatch, unicycle_rollout,
                               unicycle_rollout_reference, use_rollout)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ROLLOUTS",
    "info_nce",
    "info_nce_reference",
    "normalize_frames",
    "normalize_frames_reference",
    "unicycle_cpu_dispatch",
    "unicycle_rollout",
    "unicycle_rollout_reference",
    "use_rollout",
]
