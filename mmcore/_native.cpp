// mmcore._native: ExecuTorch methods executed through the runtime inside the executorch wheel
// (libexecutorch.so, the same runtime its Python bindings use, so kernels and backends registered
// by them are visible here), and a greedy decode loop that runs below Python.
//
//   module = Module(path, data_path)          # program loaded; methods load on demand
//   module.load_method(name)                  # each method gets its own planned memory
//   module.method_names()                     # -> [name, ...]
//   module.method_meta(name)                  # -> (inputs, outputs): (dtype, shape) per tensor, else None
//   module.execute(name, inputs, alias)       # inputs: (data_ptr, dtype, shape) tuples or scalars
//                                              # tensor outputs: (dtype, shape, buffer)
//   module.prefill_tokens(embedding, decoder, ids, start_pos, chunk, cache_positions)
//                                              # -> (last logits row, dtype, seconds, its argmax)
//   module.greedy_decode(embedding, decoder, token, pos, max_steps, eos_ids, on_token[, mask])
//                                              # -> (new token ids, seconds spent executing)
//                                              # mask: None or an int32 bitmask buffer of allowed ids,
//                                              # read before every argmax (on_token may rewrite it)
//   module.verify_greedy(embedding, decoder, ids, start_pos, cache_positions)
//                                              # -> (argmax of every logits row, accepted drafts, seconds)
//   registered_operators(), registered_backends()   # what the runtime's registries hold (mmcore.kernels)
//   llm_kernel_names(), register_llm_kernel(name, metas)  # mmcore's llama:: kernels (_llm_ops.cpp)
//
// dtype values are ExecuTorch ScalarType ids. Runtime failures raise ExecutorchError (a RuntimeError)
// naming the method and the ExecuTorch error code; exceptions from on_token propagate unchanged.
// The Python layer (mmcore.program, mmcore.decoder) turns ExecutorchError into mmcore errors.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/backend/interface.h>
#include <executorch/runtime/kernel/operator_registry.h>

// mmcore/_llm_ops.cpp
PyObject* mmcore_llm_kernel_names(PyObject*, PyObject*);
PyObject* mmcore_register_llm_kernel(PyObject*, PyObject* args);

namespace {

using executorch::aten::ScalarType;
using executorch::aten::SizesType;
using executorch::aten::Tensor;
using executorch::extension::from_blob;
using executorch::extension::TensorPtr;
using executorch::extension::module::Module;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using executorch::runtime::Program;

using Clock = std::chrono::steady_clock;

PyObject* executorch_error = nullptr;  // mmcore._native.ExecutorchError (a RuntimeError)

PyObject* raise_et(const char* action, const std::string& name, Error error) {
  PyErr_Format(executorch_error, "%s '%s' failed: ExecuTorch error 0x%x", action, name.c_str(),
               static_cast<unsigned>(error));
  return nullptr;
}

// ---- inputs ----

// Tensors viewed from Python-owned memory plus the EValues that refer to them.
struct Inputs {
  std::vector<TensorPtr> tensors;
  std::vector<EValue> values;
};

// Parses one input: a (data_ptr, dtype, shape) tuple, or a bool, int or float.
bool parse_input(PyObject* item, Py_ssize_t index, Inputs* inputs) {
  if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 3) {
    void* data = PyLong_AsVoidPtr(PyTuple_GET_ITEM(item, 0));
    long dtype = PyLong_AsLong(PyTuple_GET_ITEM(item, 1));
    if (PyErr_Occurred()) return false;
    PyObject* shape = PySequence_Fast(PyTuple_GET_ITEM(item, 2), "input shape must be a sequence");
    if (!shape) return false;
    std::vector<SizesType> sizes;
    for (Py_ssize_t d = 0; d < PySequence_Fast_GET_SIZE(shape); ++d) {
      sizes.push_back(static_cast<SizesType>(PyLong_AsLong(PySequence_Fast_GET_ITEM(shape, d))));
    }
    Py_DECREF(shape);
    if (PyErr_Occurred()) return false;
    inputs->tensors.push_back(from_blob(data, std::move(sizes), static_cast<ScalarType>(dtype)));
    inputs->values.emplace_back(*inputs->tensors.back());
  } else if (PyBool_Check(item)) {
    inputs->values.emplace_back(item == Py_True);
  } else if (PyLong_Check(item)) {
    inputs->values.emplace_back(static_cast<int64_t>(PyLong_AsLongLong(item)));
  } else if (PyFloat_Check(item)) {
    inputs->values.emplace_back(PyFloat_AsDouble(item));
  } else {
    PyErr_Format(PyExc_TypeError, "input %zd: expected a (data_ptr, dtype, shape) tuple, bool, int or float",
                 index);
    return false;
  }
  return !PyErr_Occurred();
}

// ---- outputs ----

// (dtype, shape, buffer): the buffer aliases the method's memory (valid until its next run) or,
// without `alias`, is a bytearray copy.
PyObject* tensor_to_py(const Tensor& tensor, bool alias) {
  PyObject* shape = PyTuple_New(tensor.dim());
  if (!shape) return nullptr;
  for (ssize_t d = 0; d < tensor.dim(); ++d) {
    PyTuple_SET_ITEM(shape, d, PyLong_FromLongLong(tensor.size(d)));
  }
  const auto nbytes = static_cast<Py_ssize_t>(tensor.nbytes());
  char* data = static_cast<char*>(const_cast<void*>(tensor.const_data_ptr()));
  PyObject* buffer = alias ? PyMemoryView_FromMemory(data, nbytes, PyBUF_WRITE)
                           : PyByteArray_FromStringAndSize(data, nbytes);
  if (!buffer) {
    Py_DECREF(shape);
    return nullptr;
  }
  return Py_BuildValue("(iNN)", static_cast<int>(tensor.scalar_type()), shape, buffer);
}

PyObject* evalue_to_py(const EValue& value, bool alias) {
  if (value.isTensor()) return tensor_to_py(value.toTensor(), alias);
  if (value.isInt()) return PyLong_FromLongLong(value.toInt());
  if (value.isDouble()) return PyFloat_FromDouble(value.toDouble());
  if (value.isBool()) return PyBool_FromLong(value.toBool());
  if (value.isNone()) Py_RETURN_NONE;
  if (value.isString()) {  // optimum-executorch's processor constants (`modality`, `image_processor_type`)
    const auto text = value.toString();
    return PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "replace");
  }
  PyErr_Format(PyExc_TypeError, "unsupported output value (tag %d)", static_cast<int>(value.tag));
  return nullptr;
}

// Index of the first maximum of the last row of float logits [.., V].
int64_t argmax_last_row(const Tensor& logits) {
  const int64_t width = logits.size(logits.dim() - 1);
  const float* row = logits.const_data_ptr<float>() + (logits.numel() - width);
  int64_t best = 0;
  for (int64_t i = 1; i < width; ++i) {
    if (row[i] > row[best]) best = i;
  }
  return best;
}

// Index of the first maximum of the last row of float logits among the ids whose bit is set in
// `mask` (bit i % 32 of word i / 32); -1 if the mask allows none of the row's ids.
int64_t masked_argmax_last_row(const Tensor& logits, const uint32_t* mask, int64_t mask_words) {
  const int64_t width = logits.size(logits.dim() - 1);
  const float* row = logits.const_data_ptr<float>() + (logits.numel() - width);
  const int64_t words = std::min(mask_words, (width + 31) / 32);
  int64_t best = -1;
  for (int64_t w = 0; w < words; ++w) {
    for (uint32_t bits = mask[w]; bits != 0; bits &= bits - 1) {
      const int64_t i = w * 32 + __builtin_ctz(bits);
      if (i >= width) break;
      if (best < 0 || row[i] > row[best]) best = i;
    }
  }
  return best;
}

// A read-only view of a Python buffer, released when it goes out of scope.
struct BufferView {
  Py_buffer view{};
  bool held = false;
  bool get(PyObject* object) {
    held = PyObject_GetBuffer(object, &view, PyBUF_C_CONTIGUOUS) == 0;
    return held;
  }
  ~BufferView() {
    if (held) PyBuffer_Release(&view);
  }
};

// ---- the Module type ----

struct ModuleObject {
  PyObject_HEAD
  Module* module;
  bool busy;  // a method is running with the GIL released; refuse re-entry
};

bool ready(ModuleObject* self) {
  if (!self->module) {
    PyErr_SetString(PyExc_RuntimeError, "the native module is not initialised");
    return false;
  }
  if (self->busy) {
    PyErr_SetString(PyExc_RuntimeError, "the native module is already running a method (calls must not overlap)");
    return false;
  }
  return true;
}

PyObject* module_new(PyTypeObject* type, PyObject*, PyObject*) {
  auto* self = reinterpret_cast<ModuleObject*>(type->tp_alloc(type, 0));
  if (self) {
    self->module = nullptr;
    self->busy = false;
  }
  return reinterpret_cast<PyObject*>(self);
}

void module_dealloc(ModuleObject* self) {
  delete self->module;
  Py_TYPE(self)->tp_free(reinterpret_cast<PyObject*>(self));
}

int module_init(ModuleObject* self, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"path", "data_path", nullptr};
  const char* path = nullptr;
  const char* data_path = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s|z", const_cast<char**>(keywords), &path, &data_path)) return -1;
  delete self->module;
  // Mmap: constant data (the weights) stays in the file's pages, shared by every module of the same
  // program (each `mmcore serve` slot) and, through the page cache, by worker processes (`mmcore batch`)
  // instead of a private copy of the file per module.
  self->module = data_path ? new Module(path, std::string(data_path), Module::LoadMode::Mmap)
                           : new Module(path, Module::LoadMode::Mmap);
  Error error;
  Py_BEGIN_ALLOW_THREADS
  error = self->module->load(Program::Verification::InternalConsistency);
  Py_END_ALLOW_THREADS
  if (error != Error::Ok) {
    delete self->module;
    self->module = nullptr;
    raise_et("loading program", path, error);
    return -1;
  }
  return 0;
}

PyObject* module_load_method(ModuleObject* self, PyObject* args) {
  const char* name = nullptr;
  if (!PyArg_ParseTuple(args, "s", &name) || !ready(self)) return nullptr;
  Error error;
  Py_BEGIN_ALLOW_THREADS
  error = self->module->load_method(name);
  Py_END_ALLOW_THREADS
  if (error != Error::Ok) return raise_et("loading method", name, error);
  Py_RETURN_NONE;
}

PyObject* module_execute(ModuleObject* self, PyObject* args) {
  const char* name = nullptr;
  PyObject* items = nullptr;
  int alias = 0;
  if (!PyArg_ParseTuple(args, "sOp", &name, &items, &alias) || !ready(self)) return nullptr;
  PyObject* seq = PySequence_Fast(items, "inputs must be a sequence");
  if (!seq) return nullptr;
  Inputs inputs;
  for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); ++i) {
    if (!parse_input(PySequence_Fast_GET_ITEM(seq, i), i, &inputs)) {
      Py_DECREF(seq);
      return nullptr;
    }
  }
  Py_DECREF(seq);
  std::vector<EValue> outputs;
  Error error = Error::Ok;
  self->busy = true;
  Py_BEGIN_ALLOW_THREADS
  {
    auto result = self->module->execute(name, inputs.values);
    if (result.ok()) {
      outputs = std::move(*result);
    } else {
      error = result.error();
    }
  }
  Py_END_ALLOW_THREADS
  self->busy = false;
  if (error != Error::Ok) return raise_et("executing method", name, error);
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(outputs.size()));
  if (!list) return nullptr;
  for (size_t i = 0; i < outputs.size(); ++i) {
    PyObject* value = evalue_to_py(outputs[i], alias);
    if (!value) {
      Py_DECREF(list);
      return nullptr;
    }
    PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), value);
  }
  return list;
}

// Token ids [1, T] through an optional embedding method into the decoder, in one module. Runs
// without the GIL; a failure leaves the failing method's name and error.
struct TokenPath {
  Module* module;
  std::string embedding;  // empty: the decoder takes token ids
  std::string decoder;
  const char* failed = nullptr;
  Error error = Error::Ok;
  EValue logits;  // the decoder's output after `run`, in its memory (valid until its next run)

  bool run(const EValue& tokens, const EValue& positions) {
    std::vector<EValue> inputs{tokens, positions};
    if (!embedding.empty()) {
      auto embedded = module->execute(embedding, std::vector<EValue>{tokens});
      if (!embedded.ok()) return fail(embedding.c_str(), embedded.error());
      inputs[0] = (*embedded)[0];  // [1, T, D], in token_embedding's memory
    }
    auto out = module->execute(decoder, inputs);
    if (!out.ok()) return fail(decoder.c_str(), out.error());
    logits = (*out)[0];
    if (!logits.isTensor() || logits.toTensor().dim() < 1) return fail(decoder.c_str(), Error::InvalidType);
    return true;
  }

  bool fail(const char* method, Error e) {
    failed = method;
    error = e;
    return false;
  }
};

// The path named by Python arguments (embedding: str or None), or nullptr with an exception set.
std::unique_ptr<TokenPath> token_path(ModuleObject* self, PyObject* embedding, const char* decoder) {
  auto path = std::make_unique<TokenPath>();
  path->module = self->module;
  path->decoder = decoder;
  if (embedding != Py_None) {
    const char* name = PyUnicode_AsUTF8(embedding);
    if (!name) return nullptr;
    path->embedding = name;
  }
  return path;
}

// The ints of a Python iterable, or false with an exception set.
bool int64s(PyObject* items, const char* what, std::vector<int64_t>* out) {
  PyObject* seq = PySequence_Fast(items, what);
  if (!seq) return false;
  out->resize(static_cast<size_t>(PySequence_Fast_GET_SIZE(seq)));
  for (size_t i = 0; i < out->size(); ++i) {
    (*out)[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, static_cast<Py_ssize_t>(i)));
  }
  Py_DECREF(seq);
  return !PyErr_Occurred();
}

PyObject* module_greedy_decode(ModuleObject* self, PyObject* args) {
  PyObject* embedding = nullptr;
  const char* decoder = nullptr;
  long long first = 0, start = 0;
  Py_ssize_t max_steps = 0;
  PyObject* eos_obj = nullptr;
  PyObject* on_token = nullptr;
  PyObject* mask_obj = Py_None;
  if (!PyArg_ParseTuple(args, "OsLLnOO|O", &embedding, &decoder, &first, &start, &max_steps, &eos_obj, &on_token,
                        &mask_obj) ||
      !ready(self)) {
    return nullptr;
  }
  BufferView mask;
  if (mask_obj != Py_None) {
    if (!mask.get(mask_obj)) return nullptr;
    if (mask.view.len < 4 || mask.view.len % 4 != 0) {
      PyErr_SetString(PyExc_ValueError, "mask must be an int32 bitmask buffer (a whole number of 4-byte words)");
      return nullptr;
    }
  }
  const auto* mask_bits = mask.held ? static_cast<const uint32_t*>(mask.view.buf) : nullptr;
  const int64_t mask_words = mask.held ? static_cast<int64_t>(mask.view.len / 4) : 0;
  if (on_token != Py_None && !PyCallable_Check(on_token)) {
    PyErr_SetString(PyExc_TypeError, "on_token must be callable or None");
    return nullptr;
  }
  std::vector<int64_t> eos_list;
  auto path = token_path(self, embedding, decoder);
  if (!path || !int64s(eos_obj, "eos_ids must be a sequence of int", &eos_list)) return nullptr;
  const std::unordered_set<int64_t> eos_ids(eos_list.begin(), eos_list.end());

  // One-element inputs, rewritten in place each step.
  int64_t token[1] = {first};
  int64_t pos[1] = {start};
  const TensorPtr token_tensor = from_blob(token, {1, 1}, ScalarType::Long);
  const TensorPtr pos_tensor = from_blob(pos, {1}, ScalarType::Long);
  const EValue token_value(*token_tensor), pos_value(*pos_tensor);
  double seconds = 0.0;

  PyObject* tokens = PyList_New(0);
  if (!tokens) return nullptr;
  self->busy = true;
  for (Py_ssize_t n = 0; n < max_steps; ++n) {
    int64_t next = -1;
    Py_BEGIN_ALLOW_THREADS
    const auto began = Clock::now();
    if (path->run(token_value, pos_value)) {
      if (path->logits.toTensor().scalar_type() == ScalarType::Float) {
        next = mask_bits ? masked_argmax_last_row(path->logits.toTensor(), mask_bits, mask_words)
                         : argmax_last_row(path->logits.toTensor());
      } else {
        path->fail(decoder, Error::InvalidType);
      }
    }
    seconds += std::chrono::duration<double>(Clock::now() - began).count();
    Py_END_ALLOW_THREADS
    if (path->failed) {
      self->busy = false;
      Py_DECREF(tokens);
      return raise_et("executing method", path->failed, path->error);
    }
    if (next < 0) {
      self->busy = false;
      Py_DECREF(tokens);
      PyErr_Format(PyExc_ValueError, "the token mask allows no id of the logits at position %lld",
                   static_cast<long long>(pos[0]));
      return nullptr;
    }
    PyObject* id = PyLong_FromLongLong(next);
    if (!id || PyList_Append(tokens, id) < 0) {
      Py_XDECREF(id);
      self->busy = false;
      Py_DECREF(tokens);
      return nullptr;
    }
    bool stop = false;
    if (on_token != Py_None) {
      PyObject* answer = PyObject_CallOneArg(on_token, id);
      stop = answer && PyObject_IsTrue(answer) == 1;
      Py_XDECREF(answer);
    }
    Py_DECREF(id);
    if (PyErr_Occurred() || PyErr_CheckSignals() < 0) {
      self->busy = false;
      Py_DECREF(tokens);
      return nullptr;
    }
    if (stop || eos_ids.count(next)) break;
    token[0] = next;
    pos[0] += 1;
  }
  self->busy = false;
  return Py_BuildValue("(Nd)", tokens, seconds);
}

// prefill_tokens(embedding, decoder, ids, start_pos, chunk, cache_positions)
//   -> (last logits row as bytearray, dtype, seconds, first argmax of the row or -1 if not float)
// Writes `ids` at start_pos.. in calls of at most `chunk` tokens: ids [1, T] -> (embedding ->) decoder
// with positions [start] (or, with cache_positions, arange(start, start + T)). Only the logits row
// of the last token is returned.
PyObject* module_prefill_tokens(ModuleObject* self, PyObject* args) {
  PyObject* embedding = nullptr;
  const char* decoder = nullptr;
  PyObject* ids_obj = nullptr;
  long long start_pos = 0;
  Py_ssize_t chunk = 0;
  int cache_positions = 0;
  if (!PyArg_ParseTuple(args, "OsOLnp", &embedding, &decoder, &ids_obj, &start_pos, &chunk, &cache_positions) ||
      !ready(self)) {
    return nullptr;
  }
  std::vector<int64_t> ids;
  auto path = token_path(self, embedding, decoder);
  if (!path || !int64s(ids_obj, "ids must be a sequence of int", &ids)) return nullptr;
  if (ids.empty() || chunk < 1) {
    PyErr_SetString(PyExc_ValueError, "prefill_tokens needs at least one id and a chunk of at least 1");
    return nullptr;
  }

  std::vector<char> row;  // the last logits row
  int dtype = 0;
  int64_t argmax = -1;  // its first maximum, for float logits
  double seconds = 0.0;
  self->busy = true;
  Py_BEGIN_ALLOW_THREADS
  const auto began = Clock::now();
  std::vector<int64_t> positions;
  for (size_t begin = 0; begin < ids.size(); begin += static_cast<size_t>(chunk)) {
    const auto n = static_cast<SizesType>(std::min(ids.size() - begin, static_cast<size_t>(chunk)));
    const int64_t pos = start_pos + static_cast<int64_t>(begin);
    positions.assign(1, pos);
    if (cache_positions && n > 1) {
      positions.resize(static_cast<size_t>(n));
      for (SizesType i = 0; i < n; ++i) positions[static_cast<size_t>(i)] = pos + i;
    }
    const TensorPtr tokens = from_blob(ids.data() + begin, {1, n}, ScalarType::Long);
    const TensorPtr pos_tensor =
        from_blob(positions.data(), {static_cast<SizesType>(positions.size())}, ScalarType::Long);
    if (!path->run(EValue(*tokens), EValue(*pos_tensor))) break;
  }
  if (!path->failed) {  // keep the last row of the last chunk's logits
    const Tensor& t = path->logits.toTensor();
    const size_t width = static_cast<size_t>(t.size(t.dim() - 1)) * t.element_size();
    const char* data = static_cast<const char*>(t.const_data_ptr());
    row.assign(data + t.nbytes() - width, data + t.nbytes());
    dtype = static_cast<int>(t.scalar_type());
    if (t.scalar_type() == ScalarType::Float) argmax = argmax_last_row(t);
  }
  seconds = std::chrono::duration<double>(Clock::now() - began).count();
  Py_END_ALLOW_THREADS
  self->busy = false;
  if (path->failed) return raise_et("executing method", path->failed, path->error);
  PyObject* buffer = PyByteArray_FromStringAndSize(row.data(), static_cast<Py_ssize_t>(row.size()));
  if (!buffer) return nullptr;
  return Py_BuildValue("(NidL)", buffer, dtype, seconds, static_cast<long long>(argmax));
}

// verify_greedy(embedding, decoder, ids, start_pos, cache_positions)
//   -> (first argmax of every logits row, accepted, seconds)
// Speculative verification: one decoder call on ids [1, T] (the current token, then T-1 drafts) at
// start_pos..start_pos+T-1. The decoder must return float logits for every row [1, T, V]. `accepted`
// is the longest n such that ids[1 + j] == argmax[j] for all j < n (the drafts the target agrees with).
PyObject* module_verify_greedy(ModuleObject* self, PyObject* args) {
  PyObject* embedding = nullptr;
  const char* decoder = nullptr;
  PyObject* ids_obj = nullptr;
  long long start_pos = 0;
  int cache_positions = 0;
  if (!PyArg_ParseTuple(args, "OsOLp", &embedding, &decoder, &ids_obj, &start_pos, &cache_positions) ||
      !ready(self)) {
    return nullptr;
  }
  std::vector<int64_t> ids;
  auto path = token_path(self, embedding, decoder);
  if (!path || !int64s(ids_obj, "ids must be a sequence of int", &ids)) return nullptr;
  if (ids.empty()) {
    PyErr_SetString(PyExc_ValueError, "verify_greedy needs at least one id");
    return nullptr;
  }
  const auto n = static_cast<SizesType>(ids.size());
  std::vector<int64_t> positions(1, start_pos);
  if (cache_positions && n > 1) {
    positions.resize(ids.size());
    for (SizesType i = 0; i < n; ++i) positions[static_cast<size_t>(i)] = start_pos + i;
  }
  std::vector<int64_t> argmax(ids.size(), -1);
  bool wrong_shape = false;
  double seconds = 0.0;
  self->busy = true;
  Py_BEGIN_ALLOW_THREADS
  const auto began = Clock::now();
  const TensorPtr tokens = from_blob(ids.data(), {1, n}, ScalarType::Long);
  const TensorPtr pos_tensor =
      from_blob(positions.data(), {static_cast<SizesType>(positions.size())}, ScalarType::Long);
  if (path->run(EValue(*tokens), EValue(*pos_tensor))) {
    const Tensor& t = path->logits.toTensor();
    if (t.scalar_type() != ScalarType::Float || t.dim() != 3 || t.size(1) != n) {
      wrong_shape = true;
    } else {
      const int64_t width = t.size(2);
      const float* data = t.const_data_ptr<float>();
      for (int64_t r = 0; r < n; ++r) {
        const float* row = data + r * width;
        int64_t best = 0;
        for (int64_t i = 1; i < width; ++i) {
          if (row[i] > row[best]) best = i;
        }
        argmax[static_cast<size_t>(r)] = best;
      }
    }
  }
  seconds = std::chrono::duration<double>(Clock::now() - began).count();
  Py_END_ALLOW_THREADS
  self->busy = false;
  if (path->failed) return raise_et("executing method", path->failed, path->error);
  if (wrong_shape) {
    PyErr_Format(PyExc_ValueError, "method '%s' must return float32 logits for every row [1, %d, V] to verify drafts",
                 decoder, static_cast<int>(n));
    return nullptr;
  }
  Py_ssize_t accepted = 0;
  while (accepted + 1 < static_cast<Py_ssize_t>(n) &&
         ids[static_cast<size_t>(accepted + 1)] == argmax[static_cast<size_t>(accepted)]) {
    ++accepted;
  }
  PyObject* rows = PyList_New(static_cast<Py_ssize_t>(n));
  if (!rows) return nullptr;
  for (Py_ssize_t r = 0; r < static_cast<Py_ssize_t>(n); ++r) {
    PyObject* id = PyLong_FromLongLong(argmax[static_cast<size_t>(r)]);
    if (!id) {
      Py_DECREF(rows);
      return nullptr;
    }
    PyList_SET_ITEM(rows, r, id);
  }
  return Py_BuildValue("(Nnd)", rows, accepted, seconds);
}

// ---- program metadata (what ExecuTorch's bindings' method_meta gives, without them) ----

PyObject* module_method_names(ModuleObject* self, PyObject*) {
  if (!ready(self)) return nullptr;
  auto names = self->module->method_names();
  if (!names.ok()) return raise_et("listing methods of", "program", names.error());
  PyObject* list = PyList_New(0);
  if (!list) return nullptr;
  for (const auto& name : *names) {
    PyObject* item = PyUnicode_FromStringAndSize(name.data(), static_cast<Py_ssize_t>(name.size()));
    if (!item || PyList_Append(list, item) < 0) {
      Py_XDECREF(item);
      Py_DECREF(list);
      return nullptr;
    }
    Py_DECREF(item);
  }
  return list;
}

// (dtype, shape) of a tensor value, None for any other value.
template <typename TagFn, typename InfoFn>
PyObject* value_specs(size_t count, TagFn tag_of, InfoFn info_of) {
  PyObject* specs = PyTuple_New(static_cast<Py_ssize_t>(count));
  if (!specs) return nullptr;
  for (size_t i = 0; i < count; ++i) {
    PyObject* spec = nullptr;
    auto tag = tag_of(i);
    const bool tensor = tag.ok() && *tag == executorch::runtime::Tag::Tensor;
    auto info = tensor ? info_of(i) : decltype(info_of(i))(Error::InvalidType);  // asked only of tensors (it logs otherwise)
    if (tensor && info.ok()) {
      auto sizes = info->sizes();
      PyObject* shape = PyTuple_New(static_cast<Py_ssize_t>(sizes.size()));
      if (shape) {
        for (size_t d = 0; d < sizes.size(); ++d) {
          PyTuple_SET_ITEM(shape, static_cast<Py_ssize_t>(d), PyLong_FromLong(sizes[d]));
        }
        spec = Py_BuildValue("(iN)", static_cast<int>(info->scalar_type()), shape);
      }
    } else {
      spec = Py_NewRef(Py_None);
    }
    if (!spec) {
      Py_DECREF(specs);
      return nullptr;
    }
    PyTuple_SET_ITEM(specs, static_cast<Py_ssize_t>(i), spec);
  }
  return specs;
}

PyObject* module_method_meta(ModuleObject* self, PyObject* args) {
  const char* name = nullptr;
  if (!PyArg_ParseTuple(args, "s", &name) || !ready(self)) return nullptr;
  auto meta = self->module->method_meta(name);
  if (!meta.ok()) return raise_et("reading the signature of method", name, meta.error());
  const auto& m = *meta;
  PyObject* inputs = value_specs(
      m.num_inputs(), [&](size_t i) { return m.input_tag(i); }, [&](size_t i) { return m.input_tensor_meta(i); });
  if (!inputs) return nullptr;
  PyObject* outputs = value_specs(
      m.num_outputs(), [&](size_t i) { return m.output_tag(i); }, [&](size_t i) { return m.output_tensor_meta(i); });
  if (!outputs) {
    Py_DECREF(inputs);
    return nullptr;
  }
  return Py_BuildValue("(NN)", inputs, outputs);
}

PyMethodDef module_methods[] = {
    {"method_names", reinterpret_cast<PyCFunction>(module_method_names), METH_NOARGS,
     "method_names() -> the program's method names."},
    {"method_meta", reinterpret_cast<PyCFunction>(module_method_meta), METH_VARARGS,
     "method_meta(name) -> (inputs, outputs): (dtype, shape) per tensor value, None for others."},
    {"load_method", reinterpret_cast<PyCFunction>(module_load_method), METH_VARARGS,
     "load_method(name): load a method with its own planned memory."},
    {"execute", reinterpret_cast<PyCFunction>(module_execute), METH_VARARGS,
     "execute(name, inputs, alias) -> outputs; tensors are (dtype, shape, buffer)."},
    {"prefill_tokens", reinterpret_cast<PyCFunction>(module_prefill_tokens), METH_VARARGS,
     "prefill_tokens(embedding, decoder, ids, start_pos, chunk, cache_positions) -> (row, dtype, seconds, argmax)."},
    {"greedy_decode", reinterpret_cast<PyCFunction>(module_greedy_decode), METH_VARARGS,
     "greedy_decode(embedding, decoder, token, pos, max_steps, eos_ids, on_token[, mask]) -> (tokens, seconds)."},
    {"verify_greedy", reinterpret_cast<PyCFunction>(module_verify_greedy), METH_VARARGS,
     "verify_greedy(embedding, decoder, ids, start_pos, cache_positions) -> (row argmaxes, accepted, seconds)."},
    {nullptr, nullptr, 0, nullptr},
};

PyTypeObject ModuleType = {PyVarObject_HEAD_INIT(nullptr, 0)};

PyObject* string_list(const std::vector<std::string>& names) {
  PyObject* result = PyList_New(static_cast<Py_ssize_t>(names.size()));
  if (!result) return nullptr;
  for (size_t i = 0; i < names.size(); ++i) {
    PyObject* name = PyUnicode_FromString(names[i].c_str());
    if (!name) {
      Py_DECREF(result);
      return nullptr;
    }
    PyList_SET_ITEM(result, static_cast<Py_ssize_t>(i), name);
  }
  return result;
}

// registered_operators() -> sorted list of the operator names ("aten::add.out") with a kernel in
// the runtime's registry: those of libexecutorch.so and of every kernel library loaded so far.
PyObject* registered_operators(PyObject*, PyObject*) {
  std::vector<std::string> names;
  for (const auto& kernel : executorch::runtime::get_registered_kernels()) {
    if (kernel.name_ != nullptr) names.emplace_back(kernel.name_);
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return string_list(names);
}

// registered_backends() -> names of the delegate backends registered with the runtime ("XnnpackBackend").
PyObject* registered_backends(PyObject*, PyObject*) {
  std::vector<std::string> names;
  for (size_t i = 0; i < executorch::runtime::get_num_registered_backends(); ++i) {
    auto name = executorch::runtime::get_backend_name(i);
    if (name.ok()) names.emplace_back(*name);
  }
  return string_list(names);
}

PyMethodDef native_functions[] = {
    {"llm_kernel_names", mmcore_llm_kernel_names, METH_NOARGS,
     "llm_kernel_names() -> the llama:: operators mmcore has its own kernels for (mmcore/_llm_ops.cpp)."},
    {"register_llm_kernel", mmcore_register_llm_kernel, METH_VARARGS,
     "register_llm_kernel(name, metas) -> 'registered' | 'present' | 'executorch'."},
    {"registered_operators", registered_operators, METH_NOARGS,
     "registered_operators() -> names of the operators the runtime has kernels for."},
    {"registered_backends", registered_backends, METH_NOARGS,
     "registered_backends() -> names of the delegate backends registered with the runtime."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "mmcore._native", "ExecuTorch methods and a greedy decode loop below Python.", -1,
    native_functions,
};

}  // namespace

PyMODINIT_FUNC PyInit__native(void) {
  ModuleType.tp_name = "mmcore._native.Module";
  ModuleType.tp_basicsize = sizeof(ModuleObject);
  ModuleType.tp_flags = Py_TPFLAGS_DEFAULT;
  ModuleType.tp_doc = "An ExecuTorch program whose methods run through the wheel's runtime.";
  ModuleType.tp_new = module_new;
  ModuleType.tp_init = reinterpret_cast<initproc>(module_init);
  ModuleType.tp_dealloc = reinterpret_cast<destructor>(module_dealloc);
  ModuleType.tp_methods = module_methods;
  if (PyType_Ready(&ModuleType) < 0) return nullptr;
  PyObject* module = PyModule_Create(&module_def);
  if (!module) return nullptr;
  executorch_error = PyErr_NewExceptionWithDoc("mmcore._native.ExecutorchError",
                                               "An ExecuTorch call failed (its error code is in the message).",
                                               PyExc_RuntimeError, nullptr);
  if (!executorch_error || PyModule_AddObjectRef(module, "ExecutorchError", executorch_error) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  Py_INCREF(&ModuleType);
  if (PyModule_AddObject(module, "Module", reinterpret_cast<PyObject*>(&ModuleType)) < 0) {
    Py_DECREF(&ModuleType);
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
