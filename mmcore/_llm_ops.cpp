// mmcore's own kernels for ExecuTorch's LLM custom ops (the `llama::` namespace that export_llm and
// optimum-executorch emit), so such programs run without ExecuTorch's libcustom_ops_aot_lib.so and
// therefore without libtorch. Part of mmcore._native (see mmcore/kernels.py for when they register).
//
//   llama::custom_sdpa.out(q, k, v, start_pos, attn_mask?, dropout_p, is_causal, scale?, *, out)
//   llama::sdpa_with_kv_cache.out(q, k, v, k_cache, v_cache, start_pos, seq_len, attn_mask?,
//                                 dropout_p, is_causal, scale?, *, out)
//   llama::update_cache.out(value, cache, start_pos, *, out)
//   llama::update_cache_with_indices.out(value, cache, start_pos, indices, *, out)
//
// Layouts are [batch, seq, heads, head_dim] (sequence at dim 1), contiguous. Attention reads keys
// 0 .. start_pos + S - 1 of the cache (all of it when a float mask [S, cache_len] is given);
// is_causal lets query row i see keys up to start_pos + i; query head h uses kv head
// h / (heads / kv_heads) (grouped-query attention). fp32, fp16 and bf16 tensors; scores, softmax and
// the weighted sum accumulate in float and the result is rounded once to the output type.
//
// Registration never collides with ExecuTorch's own library: ExecuTorch's kernels are registered
// under the fallback key (any dtype), these under the exact kernel keys (dtype and dim order of
// every tensor argument) a program's calls need, and ExecuTorch aborts only on a duplicate
// (name, key) pair. A name ExecuTorch already has a fallback kernel for is left to ExecuTorch.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cmath>
#include <cstring>
#include <deque>
#include <limits>
#include <string>
#include <vector>

#include <executorch/runtime/core/evalue.h>
#include <executorch/runtime/core/exec_aten/util/tensor_util.h>
#include <executorch/runtime/kernel/kernel_runtime_context.h>
#include <executorch/runtime/kernel/operator_registry.h>
#include <executorch/runtime/platform/log.h>

namespace {

using executorch::aten::BFloat16;
using executorch::aten::Half;
using executorch::aten::ScalarType;
using executorch::aten::Tensor;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using executorch::runtime::KernelRuntimeContext;
using executorch::runtime::Span;

bool contiguous(const Tensor& t) {
  auto order = t.dim_order();
  for (size_t i = 0; i < order.size(); ++i) {
    if (order[i] != i) return false;
  }
  return true;
}

bool is_float_type(ScalarType t) {
  return t == ScalarType::Float || t == ScalarType::Half || t == ScalarType::BFloat16;
}

// Reads element i of a float-family tensor as float.
inline float load(const void* data, ScalarType type, size_t i) {
  switch (type) {
    case ScalarType::Half:
      return static_cast<float>(static_cast<const Half*>(data)[i]);
    case ScalarType::BFloat16:
      return static_cast<float>(static_cast<const BFloat16*>(data)[i]);
    default:
      return static_cast<const float*>(data)[i];
  }
}

inline void store(void* data, ScalarType type, size_t i, float value) {
  switch (type) {
    case ScalarType::Half:
      static_cast<Half*>(data)[i] = Half(value);
      break;
    case ScalarType::BFloat16:
      static_cast<BFloat16*>(data)[i] = BFloat16(value);
      break;
    default:
      static_cast<float*>(data)[i] = value;
  }
}

// Copies rows [B, S, H*D] of a float tensor into a float buffer.
std::vector<float> to_float(const Tensor& t, size_t count) {
  std::vector<float> out(count);
  const void* data = t.const_data_ptr();
  if (t.scalar_type() == ScalarType::Float) {
    std::memcpy(out.data(), data, count * sizeof(float));
  } else {
    for (size_t i = 0; i < count; ++i) out[i] = load(data, t.scalar_type(), i);
  }
  return out;
}

bool fail(KernelRuntimeContext& ctx, const char* op, const char* why) {
  ET_LOG(Error, "mmcore %s: %s", op, why);
  ctx.fail(Error::InvalidArgument);
  return false;
}

// The attention of custom_sdpa: q [B, S, H, D], k/v caches [B, L, Hkv, D], out like q.
bool attention(KernelRuntimeContext& ctx, const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
               int64_t start_pos, const EValue& mask_value, bool is_causal, const EValue& scale_value, Tensor& out) {
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4) return fail(ctx, op, "query, key and value must be 4-D");
  if (!is_float_type(q.scalar_type()) || k.scalar_type() != q.scalar_type() || v.scalar_type() != q.scalar_type())
    return fail(ctx, op, "query, key and value must share one of float, half, bfloat16");
  if (!contiguous(q) || !contiguous(k) || !contiguous(v)) return fail(ctx, op, "tensors must be contiguous");
  const int64_t B = q.size(0), S = q.size(1), H = q.size(2), D = q.size(3);
  const int64_t L = k.size(1), Hkv = k.size(2);
  if (k.size(0) != B || v.size(0) != B || v.size(1) != L || v.size(2) != Hkv || k.size(3) != D || v.size(3) != D)
    return fail(ctx, op, "key and value caches must be [batch, cache_len, kv_heads, head_dim] like query");
  if (Hkv <= 0 || H % Hkv != 0) return fail(ctx, op, "query heads must be a multiple of key/value heads");
  const bool has_mask = mask_value.isTensor() && mask_value.toTensor().numel() > 0;
  if (has_mask && is_causal) return fail(ctx, op, "attn_mask and is_causal cannot both be set");
  const float* mask = nullptr;
  int64_t mask_stride = 0;
  int64_t keys = start_pos + S;
  if (has_mask) {
    const Tensor& m = mask_value.toTensor();
    if (m.dim() != 2 || m.scalar_type() != ScalarType::Float || !contiguous(m) || m.size(0) != S || m.size(1) != L)
      return fail(ctx, op, "attn_mask must be a contiguous float [seq_len, cache_len] tensor");
    mask = m.const_data_ptr<float>();
    mask_stride = m.size(1);
    keys = L;
  }
  if (start_pos < 0 || keys > L) return fail(ctx, op, "start_pos + seq_len exceeds the cache length");
  if (executorch::runtime::resize_tensor(out, q.sizes()) != Error::Ok || out.scalar_type() != q.scalar_type())
    return fail(ctx, op, "out must be shaped and typed like query");
  const double scale = scale_value.isNone() ? 1.0 / std::sqrt(static_cast<double>(D)) : scale_value.toDouble();
  const float scaling = static_cast<float>(scale);

  const int64_t reps = H / Hkv;
  const int64_t k_row = Hkv * D;  // elements per cache position
  const ScalarType type = q.scalar_type();
  std::vector<float> qf = to_float(q, static_cast<size_t>(B * S * H * D));
  std::vector<float> kf(static_cast<size_t>(keys * k_row)), vf(kf.size());
  std::vector<float> scores(static_cast<size_t>(keys)), acc(static_cast<size_t>(D));
  void* out_data = out.mutable_data_ptr();
  const void* k_data = k.const_data_ptr();
  const void* v_data = v.const_data_ptr();
  for (int64_t b = 0; b < B; ++b) {
    const size_t base = static_cast<size_t>(b * L * k_row);
    for (size_t i = 0; i < kf.size(); ++i) {
      kf[i] = load(k_data, type, base + i);
      vf[i] = load(v_data, type, base + i);
    }
    for (int64_t s = 0; s < S; ++s) {
      const int64_t visible = is_causal ? std::min(start_pos + s + 1, keys) : keys;
      for (int64_t h = 0; h < H; ++h) {
        const float* qv = qf.data() + ((b * S + s) * H + h) * D;
        const int64_t hk = h / reps;
        float max = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < visible; ++j) {
          const float* kv = kf.data() + j * k_row + hk * D;
          float dot = 0.0f;
          for (int64_t d = 0; d < D; ++d) dot += qv[d] * kv[d];
          float score = mask ? dot * scaling + mask[s * mask_stride + j] : dot * scaling;
          scores[static_cast<size_t>(j)] = score;
          if (score > max) max = score;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < visible; ++j) {
          float p = std::exp(scores[static_cast<size_t>(j)] - max);
          scores[static_cast<size_t>(j)] = p;
          sum += p;
        }
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t j = 0; j < visible; ++j) {
          const float p = scores[static_cast<size_t>(j)];
          const float* vv = vf.data() + j * k_row + hk * D;
          for (int64_t d = 0; d < D; ++d) acc[static_cast<size_t>(d)] += p * vv[d];
        }
        const float reciprocal = 1.0f / sum;
        const size_t o = static_cast<size_t>(((b * S + s) * H + h) * D);
        for (int64_t d = 0; d < D; ++d) store(out_data, type, o + static_cast<size_t>(d), acc[static_cast<size_t>(d)] * reciprocal);
      }
    }
  }
  return true;
}

// Writes value [B, S, H, D] into cache [B, L, H, D] at positions start_pos.. (or indices [B, S]).
bool update(KernelRuntimeContext& ctx, const char* op, const Tensor& value, Tensor& cache, int64_t start_pos,
            const Tensor* indices) {
  if (value.dim() != 4 || cache.dim() != 4) return fail(ctx, op, "value and cache must be 4-D");
  if (!contiguous(value) || !contiguous(cache)) return fail(ctx, op, "value and cache must be contiguous");
  if (value.size(0) != cache.size(0) || value.size(2) != cache.size(2) || value.size(3) != cache.size(3) ||
      value.element_size() != cache.element_size())
    return fail(ctx, op, "value must be [batch, seq, heads, head_dim] like the cache, with its element size");
  const int64_t B = value.size(0), S = value.size(1), L = cache.size(1);
  const size_t row = static_cast<size_t>(value.size(2) * value.size(3)) * value.element_size();
  const auto* src = static_cast<const uint8_t*>(value.const_data_ptr());
  auto* dst = static_cast<uint8_t*>(cache.mutable_data_ptr());
  if (indices == nullptr) {
    if (start_pos < 0 || start_pos + S > L) return fail(ctx, op, "start_pos + seq_len exceeds the cache length");
    for (int64_t b = 0; b < B; ++b) {
      std::memcpy(dst + static_cast<size_t>(b * L + start_pos) * row, src + static_cast<size_t>(b * S) * row,
                  static_cast<size_t>(S) * row);
    }
    return true;
  }
  if (indices->dim() != 2 || indices->scalar_type() != ScalarType::Long || indices->size(0) != B ||
      indices->size(1) != S || !contiguous(*indices))
    return fail(ctx, op, "indices must be a contiguous int64 [batch, seq_len] tensor");
  const int64_t* positions = indices->const_data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t s = 0; s < S; ++s) {
      const int64_t pos = positions[b * S + s];
      if (pos < 0 || pos >= L) return fail(ctx, op, "an index is outside the cache");
      std::memcpy(dst + static_cast<size_t>(b * L + pos) * row, src + static_cast<size_t>(b * S + s) * row, row);
    }
  }
  return true;
}

// ---- boxed kernels: args are the schema's arguments in order, then the returned value (`out` again) ----

void custom_sdpa_out(KernelRuntimeContext& ctx, Span<EValue*> args) {
  if (args.size() < 9) {
    fail(ctx, "llama::custom_sdpa.out", "expected at least 9 arguments");
    return;
  }
  attention(ctx, "llama::custom_sdpa.out", args[0]->toTensor(), args[1]->toTensor(), args[2]->toTensor(),
            args[3]->toInt(), *args[4], args[6]->toBool(), *args[7], args[8]->toTensor());
}

void sdpa_with_kv_cache_out(KernelRuntimeContext& ctx, Span<EValue*> args) {
  const char* op = "llama::sdpa_with_kv_cache.out";
  if (args.size() < 12) {
    fail(ctx, op, "expected at least 12 arguments");
    return;
  }
  const int64_t start_pos = args[5]->toInt();
  if (!update(ctx, op, args[1]->toTensor(), args[3]->toTensor(), start_pos, nullptr)) return;
  if (!update(ctx, op, args[2]->toTensor(), args[4]->toTensor(), start_pos, nullptr)) return;
  attention(ctx, op, args[0]->toTensor(), args[3]->toTensor(), args[4]->toTensor(), start_pos, *args[7],
            args[9]->toBool(), *args[10], args[11]->toTensor());
}

void update_cache_out(KernelRuntimeContext& ctx, Span<EValue*> args) {
  if (args.size() < 4) {
    fail(ctx, "llama::update_cache.out", "expected at least 4 arguments");
    return;
  }
  update(ctx, "llama::update_cache.out", args[0]->toTensor(), args[1]->toTensor(), args[2]->toInt(), nullptr);
}

void update_cache_with_indices_out(KernelRuntimeContext& ctx, Span<EValue*> args) {
  if (args.size() < 5) {
    fail(ctx, "llama::update_cache_with_indices.out", "expected at least 5 arguments");
    return;
  }
  const Tensor& indices = args[3]->toTensor();
  update(ctx, "llama::update_cache_with_indices.out", args[0]->toTensor(), args[1]->toTensor(), args[2]->toInt(),
         &indices);
}

struct OwnKernel {
  const char* name;
  executorch::runtime::OpFunction fn;
};

constexpr OwnKernel kOwnKernels[] = {
    {"llama::custom_sdpa.out", custom_sdpa_out},
    {"llama::sdpa_with_kv_cache.out", sdpa_with_kv_cache_out},
    {"llama::update_cache.out", update_cache_out},
    {"llama::update_cache_with_indices.out", update_cache_with_indices_out},
};

// Kernel keys handed to the registry (it keeps the pointers for the life of the process).
std::deque<std::string> key_storage;

}  // namespace

// llm_kernel_names() -> the llama:: operators mmcore has kernels for.
PyObject* mmcore_llm_kernel_names(PyObject*, PyObject*) {
  PyObject* result = PyList_New(0);
  if (!result) return nullptr;
  for (const auto& kernel : kOwnKernels) {
    PyObject* name = PyUnicode_FromString(kernel.name);
    if (!name || PyList_Append(result, name) < 0) {
      Py_XDECREF(name);
      Py_DECREF(result);
      return nullptr;
    }
    Py_DECREF(name);
  }
  return result;
}

// register_llm_kernel(name, metas) -> "registered" | "present" | "executorch"
// metas: [(ScalarType id, dim_order), ...], one per tensor argument of the call, in order.
// "present": a kernel with exactly this key is registered already (mmcore's, from another program);
// "executorch": ExecuTorch's own library (a fallback kernel for the name) is loaded; it is used.
PyObject* mmcore_register_llm_kernel(PyObject*, PyObject* args) {
  const char* name = nullptr;
  PyObject* metas = nullptr;
  if (!PyArg_ParseTuple(args, "sO", &name, &metas)) return nullptr;
  const OwnKernel* own = nullptr;
  for (const auto& kernel : kOwnKernels) {
    if (std::strcmp(kernel.name, name) == 0) own = &kernel;
  }
  if (own == nullptr) {
    PyErr_Format(PyExc_ValueError, "mmcore has no kernel for operator %s", name);
    return nullptr;
  }
  PyObject* seq = PySequence_Fast(metas, "metas must be a sequence of (dtype, dim_order)");
  if (!seq) return nullptr;
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
  std::vector<std::vector<executorch::aten::DimOrderType>> orders(static_cast<size_t>(n));
  std::vector<executorch::runtime::TensorMeta> meta(static_cast<size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    int dtype = 0;
    PyObject* order = nullptr;
    if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "iO", &dtype, &order)) {
      Py_DECREF(seq);
      return nullptr;
    }
    PyObject* dims = PySequence_Fast(order, "dim_order must be a sequence of ints");
    if (!dims) {
      Py_DECREF(seq);
      return nullptr;
    }
    auto& dims_out = orders[static_cast<size_t>(i)];
    for (Py_ssize_t d = 0; d < PySequence_Fast_GET_SIZE(dims); ++d) {
      dims_out.push_back(static_cast<executorch::aten::DimOrderType>(PyLong_AsLong(PySequence_Fast_GET_ITEM(dims, d))));
    }
    Py_DECREF(dims);
    meta[static_cast<size_t>(i)] =
        executorch::runtime::TensorMeta(static_cast<ScalarType>(dtype), {dims_out.data(), dims_out.size()});
  }
  Py_DECREF(seq);
  if (PyErr_Occurred()) return nullptr;

  char buffer[executorch::runtime::internal::kKernelKeyBufSize];
  if (executorch::runtime::internal::make_kernel_key_string({meta.data(), meta.size()}, buffer, sizeof(buffer)) !=
      Error::Ok) {
    PyErr_Format(PyExc_ValueError, "cannot make a kernel key for %s from %zd tensor arguments", name, n);
    return nullptr;
  }
  const executorch::runtime::KernelKey key(buffer);
  for (const auto& kernel : executorch::runtime::get_registered_kernels()) {
    if (kernel.name_ == nullptr || std::strcmp(kernel.name_, name) != 0) continue;
    if (kernel.kernel_key_.is_fallback()) return PyUnicode_FromString("executorch");
    if (kernel.kernel_key_ == key) return PyUnicode_FromString("present");
  }
  key_storage.emplace_back(buffer);
  const executorch::runtime::Kernel kernel(own->name, executorch::runtime::KernelKey(key_storage.back().c_str()),
                                           own->fn);
  if (executorch::runtime::register_kernels({&kernel, 1}) != Error::Ok) {
    PyErr_Format(PyExc_RuntimeError, "ExecuTorch refused to register mmcore's kernel for %s", name);
    return nullptr;
  }
  return PyUnicode_FromString("registered");
}
