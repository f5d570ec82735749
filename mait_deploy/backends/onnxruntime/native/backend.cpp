// ONNX Runtime through its C API (the header-only C++ wrapper over it, versioned: ORT_API_VERSION of the headers
// this is built with, served by any newer library). The manifest's runtime options, as the Python runner reads
// them: simulate_int8 (Q/DQ as float ops), providers (CPU only here), int8_format (recorded, nothing to set).
#include <nlohmann/json.hpp>
#include <onnxruntime_cxx_api.h>

#include "internal.hpp"

namespace mait {
namespace {

using nlohmann::json;

class OnnxRuntimeBackend final : public Backend {
 public:
  OnnxRuntimeBackend(const std::filesystem::path& bundle, const Manifest& manifest, const RunnerOptions& options)
      : env_(ORT_LOGGING_LEVEL_ERROR, "mait"), classes_(manifest.num_classes), sample_shape_(manifest.sample_shape) {
    const json settings = json::parse(manifest.runtime_options_json);
    Ort::SessionOptions session_options;
    if (settings.value("simulate_int8", false)) session_options.AddConfigEntry("session.disable_quant_qdq", "1");
    if (options.threads > 0) session_options.SetIntraOpNumThreads(options.threads);
    if (settings.contains("providers") && settings.at("providers").is_array())
      for (const auto& provider : settings.at("providers"))
        if (provider != "CPUExecutionProvider")
          throw Error("the native runner runs ONNX Runtime on the CPU; this bundle asks for " + provider.dump());
    simulate_int8_ = settings.value("simulate_int8", false);
    threads_ = options.threads;
    session_ = Ort::Session(env_, (bundle / manifest.artifact.path).c_str(), session_options);
    Ort::AllocatorWithDefaultOptions allocator;
    input_name_ = session_.GetInputNameAllocated(0, allocator).get();
    output_name_ = session_.GetOutputNameAllocated(0, allocator).get();
    if (input_name_ != manifest.input_name)
      throw Error("the artifact's input is '" + input_name_ + "'; its manifest says '" + manifest.input_name + "'");
    input_type_ = session_.GetInputTypeInfo(0).GetTensorTypeAndShapeInfo().GetElementType();
    if (input_type_ != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT && input_type_ != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16)
      throw Error("the artifact's input is neither float32 nor float16");
  }

  double infer(const float* inputs, std::int64_t count, float* logits) override {
    std::vector<std::int64_t> shape = {count};
    shape.insert(shape.end(), sample_shape_.begin(), sample_shape_.end());
    std::size_t elements = static_cast<std::size_t>(count);
    for (auto dim : sample_shape_) elements *= static_cast<std::size_t>(dim);
    const Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    Ort::Value input{nullptr};
    if (input_type_ == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16) {
      half_.assign(elements, Ort::Float16_t{});
      for (std::size_t i = 0; i < elements; ++i) half_[i] = Ort::Float16_t(inputs[i]);
      input = Ort::Value::CreateTensor<Ort::Float16_t>(memory, half_.data(), elements, shape.data(), shape.size());
    } else {  // the caller's buffer, not a copy
      input = Ort::Value::CreateTensor<float>(memory, const_cast<float*>(inputs), elements, shape.data(),
                                              shape.size());
    }
    const char* input_names[] = {input_name_.c_str()};
    const char* output_names[] = {output_name_.c_str()};
    std::vector<Ort::Value> outputs;
    const auto started = std::chrono::steady_clock::now();
    try {
      outputs = session_.Run(Ort::RunOptions{nullptr}, input_names, &input, 1, output_names, 1);
    } catch (const Ort::Exception& error) {
      throw Error("onnxruntime: " + one_line(error.what()));
    }
    const double elapsed = milliseconds_since(started);
    const auto info = outputs.front().GetTensorTypeAndShapeInfo();
    const std::vector<std::int64_t> out_shape = info.GetShape();
    if (out_shape.size() != 2 || out_shape[0] != count || out_shape[1] != classes_)
      throw Error("the artifact gives outputs of shape [" + std::to_string(out_shape.empty() ? 0 : out_shape[0]) +
                  ", " + std::to_string(out_shape.size() > 1 ? out_shape[1] : 0) + "]; its manifest promises [N, " +
                  std::to_string(classes_) + "]");
    const std::size_t size = static_cast<std::size_t>(count * classes_);
    if (info.GetElementType() == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16) {
      const auto* values = outputs.front().GetTensorData<Ort::Float16_t>();
      for (std::size_t i = 0; i < size; ++i) logits[i] = values[i].ToFloat();
    } else {
      const float* values = outputs.front().GetTensorData<float>();
      std::copy(values, values + size, logits);
    }
    return elapsed;
  }

  std::string describe() const override {
    return std::string("onnxruntime ") + Ort::GetVersionString() + " (C API " + std::to_string(ORT_API_VERSION) +
           "), CPUExecutionProvider, threads " + (threads_ ? std::to_string(threads_) : "default") +
           (simulate_int8_ ? ", simulate_int8" : "");
  }

 private:
  Ort::Env env_;
  Ort::Session session_{nullptr};
  std::string input_name_, output_name_;
  ONNXTensorElementDataType input_type_ = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  int classes_;
  std::vector<std::int64_t> sample_shape_;
  std::vector<Ort::Float16_t> half_;
  bool simulate_int8_ = false;
  int threads_ = 0;
};

}  // namespace

const char* backend_runtime() { return "onnxruntime"; }

std::unique_ptr<Backend> make_backend(const std::filesystem::path& bundle, const Manifest& manifest,
                                      const RunnerOptions& options) {
  try {
    return std::make_unique<OnnxRuntimeBackend>(bundle, manifest, options);
  } catch (const Ort::Exception& error) {
    throw Error("onnxruntime cannot load " + (bundle / manifest.artifact.path).string() + ": " +
                one_line(error.what()));
  }
}

}  // namespace mait
