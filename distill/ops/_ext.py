"""Loads the compiled extension ``distill._C``, which registers the ``torch.ops.distill.*`` ops
(their schemas and CPU / CUDA kernels); the op modules of this package import it."""
import torch  # noqa: F401  (loads libtorch, which _C links against)

try:
    from .. import _C  # noqa: F401
except ImportError as error:
    raise ImportError(
        f"distill._C (the compiled ops) is missing or broken ({error}); build it from the repo root "
        "with: pip install --no-build-isolation -e ."
    ) from error
