// Argument checks shared by every op in csrc/. Each check names the op and the argument, and
// looks only at sizes (never at strides), so any view of a valid tensor passes.
//
//   DISTILL_CHECK_DTYPE(op, frames, at::kByte);          // "<op>: frames must be torch.uint8, got torch.float32"
//   DISTILL_CHECK_SHAPE(op, mean, {3});                  // "<op>: mean must have shape (3,), got (4,)"
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <sstream>
#include <string>

namespace distill {

inline std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kByte: return "torch.uint8";
    case at::kChar: return "torch.int8";
    case at::kShort: return "torch.int16";
    case at::kInt: return "torch.int32";
    case at::kLong: return "torch.int64";
    case at::kHalf: return "torch.float16";
    case at::kBFloat16: return "torch.bfloat16";
    case at::kFloat: return "torch.float32";
    case at::kDouble: return "torch.float64";
    case at::kBool: return "torch.bool";
    default: return c10::toString(t);
  }
}

// Python-style shape string: (4, 3, 8), (3,), ().
inline std::string shape_str(at::IntArrayRef sizes) {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < sizes.size(); ++i) s << (i ? ", " : "") << sizes[i];
  s << (sizes.size() == 1 ? ",)" : ")");
  return s.str();
}

inline void check_device(const char* op, const char* name, const at::Tensor& t, c10::DeviceType type) {
  TORCH_CHECK(t.device().type() == type, op, ": ", name, " must be on ", c10::DeviceTypeName(type, true),
              ", got ", t.device());
}

inline void check_dtype(const char* op, const char* name, const at::Tensor& t, at::ScalarType dtype) {
  TORCH_CHECK(t.scalar_type() == dtype, op, ": ", name, " must be ", dtype_name(dtype), ", got ",
              dtype_name(t.scalar_type()));
}

// `layout` describes the expected shape for the message, e.g. "(..., F, H, W, 3)".
inline void check_min_dim(const char* op, const char* name, const at::Tensor& t, int64_t min_dim,
                          const char* layout) {
  TORCH_CHECK(t.dim() >= min_dim, op, ": ", name, " must have shape ", layout, " (at least ", min_dim,
              " dims), got ", shape_str(t.sizes()));
}

// Size of one dim (negative counts from the end); call check_min_dim first.
inline void check_size(const char* op, const char* name, const at::Tensor& t, int64_t dim, int64_t size,
                       const char* layout) {
  TORCH_CHECK(t.size(dim) == size, op, ": ", name, " must have shape ", layout, ", got ",
              shape_str(t.sizes()));
}

inline void check_shape(const char* op, const char* name, const at::Tensor& t, at::IntArrayRef shape) {
  TORCH_CHECK(t.sizes() == shape, op, ": ", name, " must have shape ", shape_str(shape), ", got ",
              shape_str(t.sizes()));
}

}  // namespace distill

// Macro forms that spell the argument name from the variable name.
#define DISTILL_CHECK_DEVICE(op, t, type) ::distill::check_device(op, #t, t, type)
#define DISTILL_CHECK_DTYPE(op, t, dtype) ::distill::check_dtype(op, #t, t, dtype)
#define DISTILL_CHECK_MIN_DIM(op, t, n, layout) ::distill::check_min_dim(op, #t, t, n, layout)
#define DISTILL_CHECK_SIZE(op, t, dim, size, layout) ::distill::check_size(op, #t, t, dim, size, layout)
#define DISTILL_CHECK_SHAPE(op, t, ...) ::distill::check_shape(op, #t, t, __VA_ARGS__)
