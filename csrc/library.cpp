// The one TORCH_LIBRARY(distill, m) block: the schema of every op in the library is defined here,
// so the operator API reads in one place. Each op file (csrc/<op>.cpp, and later
// csrc/cuda/<op>.cu) only registers kernels with TORCH_LIBRARY_IMPL(distill, CPU|CUDA, m).
// To add an op: add its m.def(...) below (after a set_python_module naming its Python module),
// its kernel file, and its module distill/ops/<op>.py with the wrapper, the plain-PyTorch
// reference and the register_fake. (A second TORCH_LIBRARY(distill, ...) anywhere would fail at
// load time.)
#include <Python.h>
#include <torch/library.h>

// `import distill._C` loads this shared object, which runs the static registrations below and
// in the kernel files. The module itself has no Python functions: the ops are torch.ops.distill.*.
extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}

TORCH_LIBRARY(distill, m) {
  // Fake (meta) kernels live in Python, in the op's module of the package distill.ops; tell torch
  // where, so it can say what to import (torch also checks that the fake is registered there).
  // Each set_python_module holds for the m.def calls after it.
  m.set_python_module("distill.ops.normalize_frames");
  // frames uint8 (..., F, H, W, 3), mean/std float32 (3,) -> float32 (..., F*3, H, W).
  m.def("normalize_frames(Tensor frames, Tensor mean, Tensor std) -> Tensor");

  m.set_python_module("distill.ops.unicycle_rollout");
  // accel, curvature (..., T), v0 (...), one floating dtype -> poses x, y, yaw (..., T) at
  // t1..tT of the unicycle model (distill/kinematics/unicycle.py), and the gradients of accel,
  // curvature and v0 from those of x, y, yaw. dt is a constant.
  m.def("unicycle_rollout(Tensor accel, Tensor curvature, Tensor v0, float dt) -> (Tensor, Tensor, Tensor)",
        {at::Tag::pt2_compliant_tag});
  m.def("unicycle_rollout_backward(Tensor grad_x, Tensor grad_y, Tensor grad_yaw, Tensor accel, "
        "Tensor curvature, Tensor v0, float dt) -> (Tensor, Tensor, Tensor)",
        {at::Tag::pt2_compliant_tag});
  // Which CPU kernel set unicycle_rollout runs in this process and why, as JSON (kernel_set, how:
  // measured | only | forced, probe_seconds per set); see csrc/unicycle_rollout.cpp.
  m.def("unicycle_cpu_dispatch() -> str");
}
