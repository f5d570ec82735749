// LiteRT through its C API (libLiteRt.so from the ai-edge-litert wheel; the subset declared in litert_c.h): the
// CompiledModel API on the CPU accelerator (XNNPACK), with the thread count the Python runner uses (--threads, else
// every core). The .tflite has a static batch (the manifest's); the runner chunks and pads to it. An INT8 bundle
// has int8 input and output tensors: quantized and dequantized here exactly as the Python runner does it (numpy's
// round half to even, float32 arithmetic).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <nlohmann/json.hpp>

#include "internal.hpp"
#include "litert_c.h"

namespace mait {
namespace {

std::string status_text(LiteRtStatus status) {
  switch (status) {
    case kLiteRtStatusErrorInvalidArgument: return "invalid argument";
    case kLiteRtStatusErrorMemoryAllocationFailure: return "out of memory";
    case kLiteRtStatusErrorRuntimeFailure: return "runtime failure";
    case kLiteRtStatusErrorUnsupported: return "unsupported";
    case kLiteRtStatusErrorNotFound: return "not found";
    case kLiteRtStatusErrorFileIO: return "cannot read the file";
    case kLiteRtStatusErrorInvalidFlatbuffer: return "not a valid .tflite flatbuffer";
    case kLiteRtStatusErrorCompilation: return "compilation failed";
    default: return "status " + std::to_string(static_cast<int>(status));
  }
}

void check(LiteRtStatus status, const std::string& what) {
  if (status != kLiteRtStatusOk) throw Error("litert: " + what + " (" + status_text(status) + ")");
}

// TFLite's logger inside libLiteRt.so prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." when a
// model is compiled for the CPU, and neither the C API nor an environment option reaches it (the environment's
// logger severity covers LiteRT's own lines only): file descriptor 2 points at /dev/null while the model compiles,
// as the Python device side does around a load, so the runner's contract (one error line) holds. The whole
// process's stderr is affected for that moment; MAIT_LITERT_LOGS=1 keeps LiteRT's lines.
class QuietStderr {
 public:
  QuietStderr() {
    const char* keep = std::getenv("MAIT_LITERT_LOGS");
    if (keep != nullptr && std::string(keep) == "1") return;
    std::fflush(stderr);
    saved_ = ::dup(2);
    const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (saved_ < 0 || null < 0 || ::dup2(null, 2) < 0) restore();
    if (null >= 0) ::close(null);
  }
  QuietStderr(const QuietStderr&) = delete;
  QuietStderr& operator=(const QuietStderr&) = delete;
  ~QuietStderr() { restore(); }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
  }
  int saved_ = -1;
};

// A handle released by its LiteRT destroy function.
template <typename Handle, void (*Destroy)(Handle)>
struct Owned {
  Handle handle = nullptr;
  Owned() = default;
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  ~Owned() {
    if (handle != nullptr) Destroy(handle);
  }
};

// Host memory a tensor buffer wraps: LiteRT wants it aligned to LITERT_HOST_MEMORY_BUFFER_ALIGNMENT.
struct AlignedBytes {
  explicit AlignedBytes(std::size_t bytes)
      : size((bytes + LITERT_HOST_MEMORY_BUFFER_ALIGNMENT - 1) / LITERT_HOST_MEMORY_BUFFER_ALIGNMENT *
             LITERT_HOST_MEMORY_BUFFER_ALIGNMENT),
        data(std::aligned_alloc(LITERT_HOST_MEMORY_BUFFER_ALIGNMENT, size)) {
    if (data == nullptr) throw Error("litert: cannot allocate " + std::to_string(bytes) + " bytes");
    std::memset(data, 0, size);
  }
  AlignedBytes(const AlignedBytes&) = delete;
  AlignedBytes& operator=(const AlignedBytes&) = delete;
  ~AlignedBytes() { std::free(data); }
  std::size_t size;
  void* data;
};

// One end of the model: its tensor type, its quantization (INT8) and the host memory behind its buffer.
struct Port {
  LiteRtRankedTensorType type{};
  bool quantized = false;
  float scale = 1.0f;
  float zero_point = 0.0f;
  std::int64_t elements = 1;
  std::unique_ptr<AlignedBytes> memory;
  Owned<LiteRtTensorBuffer, LiteRtDestroyTensorBuffer> buffer;

  void describe_from(LiteRtTensor tensor, const std::string& which) {
    check(LiteRtGetRankedTensorType(tensor, &type), "the " + which + " has no ranked tensor type");
    if (type.element_type == kLiteRtElementTypeInt8) {
      LiteRtQuantizationTypeId kind = kLiteRtQuantizationNone;
      check(LiteRtGetQuantizationTypeId(tensor, &kind), "no quantization for the int8 " + which);
      if (kind != kLiteRtQuantizationPerTensor) throw Error("the model's int8 " + which + " is not quantized per tensor");
      LiteRtQuantizationPerTensor quantization{};
      check(LiteRtGetPerTensorQuantization(tensor, &quantization), "no quantization for the int8 " + which);
      quantized = true;
      scale = quantization.scale;
      zero_point = static_cast<float>(quantization.zero_point);
      if (!(scale > 0.0f) || !std::isfinite(scale)) throw Error("the model's int8 " + which + " has scale " +
                                                                std::to_string(scale));
    } else if (type.element_type != kLiteRtElementTypeFloat32) {
      throw Error("the model's " + which + " is neither float32 nor per-tensor int8 (element type " +
                  std::to_string(static_cast<int>(type.element_type)) + ")");
    }
    if (type.layout.rank == 0 || type.layout.rank > LITERT_TENSOR_MAX_RANK)
      throw Error("the model's " + which + " has rank " + std::to_string(type.layout.rank));
    for (unsigned i = 0; i < type.layout.rank; ++i) {
      if (type.layout.dimensions[i] <= 0) throw Error("the model's " + which + " has a dynamic dimension");
      elements *= type.layout.dimensions[i];
    }
    if (elements > (std::int64_t{1} << 28)) throw Error("the model's " + which + " is too large");
    const std::size_t bytes = static_cast<std::size_t>(elements) * (quantized ? 1 : sizeof(float));
    memory = std::make_unique<AlignedBytes>(bytes);
    check(LiteRtCreateTensorBufferFromHostMemory(&type, memory->data, bytes, nullptr, &buffer.handle),
          "cannot wrap the " + which + " buffer");
  }

  std::vector<std::int64_t> shape() const {
    return std::vector<std::int64_t>(type.layout.dimensions, type.layout.dimensions + type.layout.rank);
  }
};

class LiteRtBackend final : public Backend {
 public:
  LiteRtBackend(const std::filesystem::path& bundle, const Manifest& manifest, const RunnerOptions& options)
      : classes_(manifest.num_classes) {
    const auto settings = nlohmann::json::parse(manifest.runtime_options_json);
    if (!settings.value("xnnpack", true))
      throw Error("this LiteRT bundle asks for the reference kernels (xnnpack: false); the native runner runs "
                  "LiteRT on its CPU accelerator (XNNPACK): run it with the Python device side");
    // Only the CPU accelerator (no probing for GPU and NPU libraries) and no log lines of LiteRT's own: the runner
    // reports one error line, from the status of the call that failed.
    const LiteRtEnvOption environment_options[] = {
        {kLiteRtEnvOptionTagAutoRegisterAccelerators, {kLiteRtAnyTypeInt, {kLiteRtHwAcceleratorCpu}}},
        {kLiteRtEnvOptionTagMinLoggerSeverity, {kLiteRtAnyTypeInt, {kLiteRtLogSeveritySilent}}},
    };
    check(LiteRtCreateEnvironment(2, environment_options, &environment_.handle), "cannot create the environment");
    const std::string artifact = (bundle / manifest.artifact.path).string();
    check(LiteRtCreateModelFromFile(environment_.handle, artifact.c_str(), &model_.handle),
          "cannot load " + manifest.artifact.path);
    LiteRtParamIndex signatures = 0, inputs = 0, outputs = 0;
    LiteRtSignature signature = nullptr;
    check(LiteRtGetNumModelSignatures(model_.handle, &signatures), "cannot read the model's signatures");
    if (signatures < 1) throw Error("litert: " + manifest.artifact.path + " has no signature");
    check(LiteRtGetModelSignature(model_.handle, 0, &signature), "cannot read the model's signature");
    check(LiteRtGetNumSignatureInputs(signature, &inputs), "cannot count the model's inputs");
    check(LiteRtGetNumSignatureOutputs(signature, &outputs), "cannot count the model's outputs");
    if (inputs != 1 || outputs != 1)
      throw Error("the model has " + std::to_string(inputs) + " inputs and " + std::to_string(outputs) +
                  " outputs; a classifier bundle has one of each");

    threads_ = options.threads > 0 ? options.threads
                                   : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    Owned<LiteRtOptions, LiteRtDestroyOptions> compile_options;
    check(LiteRtCreateOptions(&compile_options.handle), "cannot create the compilation options");
    check(LiteRtSetOptionsHardwareAccelerators(compile_options.handle, kLiteRtHwAcceleratorCpu),
          "cannot select the CPU accelerator");
    // The CPU accelerator's options travel as TOML text under the identifier "xnnpack" (LiteRT's own
    // LiteRtCreateCpuOptions builds the same payload; libLiteRt.so does not export it).
    const std::string cpu_options = "num_threads = " + std::to_string(threads_) + "\n";
    char* payload = static_cast<char*>(std::malloc(cpu_options.size() + 1));
    if (payload == nullptr) throw Error("litert: out of memory");
    std::memcpy(payload, cpu_options.c_str(), cpu_options.size() + 1);
    LiteRtOpaqueOptions cpu = nullptr;
    const LiteRtStatus created = LiteRtCreateOpaqueOptions("xnnpack", payload, std::free, &cpu);
    if (created != kLiteRtStatusOk) std::free(payload);
    check(created, "cannot create the CPU options");
    check(LiteRtAddOpaqueOptions(compile_options.handle, cpu), "cannot add the CPU options");
    LiteRtStatus compiled = kLiteRtStatusOk;
    {
      QuietStderr quiet;
      compiled = LiteRtCreateCompiledModel(environment_.handle, model_.handle, compile_options.handle,
                                           &compiled_.handle);
    }
    check(compiled, "cannot compile " + manifest.artifact.path + " for the CPU");

    LiteRtTensor input = nullptr, output = nullptr;
    check(LiteRtGetSignatureInputTensorByIndex(signature, 0, &input), "cannot read the model's input");
    check(LiteRtGetSignatureOutputTensorByIndex(signature, 0, &output), "cannot read the model's output");
    input_.describe_from(input, "input");
    output_.describe_from(output, "output");
    std::vector<std::int64_t> expected = {manifest.fixed_batch.value_or(1)};
    expected.insert(expected.end(), manifest.sample_shape.begin(), manifest.sample_shape.end());
    if (input_.shape() != expected) throw Error("the model's input shape differs from its manifest's");
    if (output_.shape() != std::vector<std::int64_t>{expected[0], classes_})
      throw Error("the model's output shape differs from its manifest's [N, " + std::to_string(classes_) + "]");
    batch_ = expected[0];
  }

  double infer(const float* inputs, std::int64_t count, float* logits) override {
    if (count != batch_)
      throw Error("the model takes a batch of " + std::to_string(batch_) + ", got " + std::to_string(count));
    if (input_.quantized) {
      auto* target = static_cast<std::int8_t*>(input_.memory->data);
      for (std::int64_t i = 0; i < input_.elements; ++i) {
        // numpy: clip(round(x / scale) + zero, -128, 127) in float32, round half to even (nearbyint's default).
        const float value = std::nearbyint(inputs[i] / input_.scale) + input_.zero_point;
        target[i] = static_cast<std::int8_t>(std::min(127.0f, std::max(-128.0f, value)));
      }
    } else {
      std::memcpy(input_.memory->data, inputs, static_cast<std::size_t>(input_.elements) * sizeof(float));
    }
    LiteRtTensorBuffer in[] = {input_.buffer.handle};
    LiteRtTensorBuffer out[] = {output_.buffer.handle};
    const auto started = std::chrono::steady_clock::now();
    check(LiteRtRunCompiledModel(compiled_.handle, 0, 1, in, 1, out), "the model run failed");
    const double elapsed = milliseconds_since(started);
    if (output_.quantized) {
      const auto* source = static_cast<const std::int8_t*>(output_.memory->data);
      for (std::int64_t i = 0; i < output_.elements; ++i)
        logits[i] = (static_cast<float>(source[i]) - output_.zero_point) * output_.scale;
    } else {
      std::memcpy(logits, output_.memory->data, static_cast<std::size_t>(output_.elements) * sizeof(float));
    }
    return elapsed;
  }

  std::string describe() const override {
    return std::string("litert (C API, CompiledModel), CPU accelerator (XNNPACK), threads ") +
           std::to_string(threads_) + (input_.quantized ? ", int8 input/output" : "");
  }

 private:
  // Declared in release order reversed: buffers, compiled model, model, environment.
  Owned<LiteRtEnvironment, LiteRtDestroyEnvironment> environment_;
  Owned<LiteRtModel, LiteRtDestroyModel> model_;
  Owned<LiteRtCompiledModel, LiteRtDestroyCompiledModel> compiled_;
  Port input_, output_;
  std::int64_t classes_;
  std::int64_t batch_ = 1;
  int threads_ = 1;
};

}  // namespace

const char* backend_runtime() { return "litert"; }

std::unique_ptr<Backend> make_backend(const std::filesystem::path& bundle, const Manifest& manifest,
                                      const RunnerOptions& options) {
  return std::make_unique<LiteRtBackend>(bundle, manifest, options);
}

}  // namespace mait
