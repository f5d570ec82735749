// OpenVINO through its C++ API (openvino/openvino.hpp). The manifest's runtime options, as the Python runner
// reads them: device, inference_precision (default from the bundle: f32 for FP32/INT8, f16 for FP16 where the
// device computes it; the CPU plugin's own default is bf16 on BF16 CPUs and f16 on Arm, which misses the golden
// outputs), performance_hint, num_streams, shapes (static: a model compiled per batch size, all kept).
#include <map>

#include <nlohmann/json.hpp>
#include <openvino/openvino.hpp>

#include "internal.hpp"

namespace mait {
namespace {

using nlohmann::json;

std::string option_text(const json& settings, const char* key, const std::string& fallback) {
  return settings.contains(key) && settings.at(key).is_string() ? settings.at(key).get<std::string>() : fallback;
}

class OpenVinoBackend final : public Backend {
 public:
  OpenVinoBackend(const std::filesystem::path& bundle, const Manifest& manifest, const RunnerOptions& options)
      : classes_(manifest.num_classes), sample_shape_(manifest.sample_shape) {
    const json settings = json::parse(manifest.runtime_options_json);
    device_ = option_text(settings, "device", "CPU");
    const auto devices = core_.get_available_devices();
    if (std::find(devices.begin(), devices.end(), device_) == devices.end())
      throw Error("OpenVINO device '" + device_ + "' is not available here");
    const auto capabilities = core_.get_property(device_, ov::device::capabilities);
    const auto has = [&](const std::string& name) {
      return std::find(capabilities.begin(), capabilities.end(), name) != capabilities.end();
    };
    precision_ = option_text(settings, "inference_precision", "");
    if (precision_.empty())
      precision_ = manifest.precision == "fp16" && has(ov::device::capability::FP16) ? "f16" : "f32";
    else if ((precision_ == "bf16" && !has(ov::device::capability::BF16)) ||
             (precision_ == "f16" && !has(ov::device::capability::FP16)))
      throw Error("inference precision " + precision_ + " is not available on OpenVINO " + device_ + " here");
    config_.emplace(ov::hint::inference_precision.name(), precision_ == "f16"    ? ov::element::f16
                                                          : precision_ == "bf16" ? ov::element::bf16
                                                                                 : ov::element::f32);
    const std::string hint = option_text(settings, "performance_hint", "LATENCY");
    config_.emplace(ov::hint::performance_mode.name(), hint == "THROUGHPUT" ? ov::hint::PerformanceMode::THROUGHPUT
                                                       : hint == "CUMULATIVE_THROUGHPUT"
                                                           ? ov::hint::PerformanceMode::CUMULATIVE_THROUGHPUT
                                                           : ov::hint::PerformanceMode::LATENCY);
    if (settings.contains("num_streams") && settings.at("num_streams").is_number_integer())
      config_.emplace(ov::num_streams.name(), ov::streams::Num(settings.at("num_streams").get<int>()));
    if (options.threads > 0) config_.emplace(ov::inference_num_threads.name(), options.threads);
    threads_ = options.threads;
    model_ = core_.read_model((bundle / manifest.artifact.path).string());
    static_ = option_text(settings, "shapes", "static") == "static" && model_->is_dynamic();
    compiled_for(static_ ? 1 : 0);  // one compile now checks the device and the config
  }

  double infer(const float* inputs, std::int64_t count, float* logits) override {
    Compiled& compiled = compiled_for(static_ ? count : 0);
    ov::Shape shape = {static_cast<std::size_t>(count)};
    for (auto dim : sample_shape_) shape.push_back(static_cast<std::size_t>(dim));
    // The caller's buffer, not a copy (OpenVINO reads it during infer()).
    ov::Tensor input(ov::element::f32, shape, const_cast<float*>(inputs));
    compiled.request.set_input_tensor(input);
    const auto started = std::chrono::steady_clock::now();
    try {
      compiled.request.infer();
    } catch (const ov::Exception& error) {
      throw Error("openvino: " + one_line(error.what()));
    }
    const double elapsed = milliseconds_since(started);
    const ov::Tensor output = compiled.request.get_output_tensor();
    const ov::Shape out_shape = output.get_shape();
    if (out_shape.size() != 2 || out_shape[0] != static_cast<std::size_t>(count) ||
        out_shape[1] != static_cast<std::size_t>(classes_))
      throw Error("the artifact gives outputs of shape " + out_shape.to_string() + "; its manifest promises [N, " +
                  std::to_string(classes_) + "]");
    const std::size_t size = static_cast<std::size_t>(count * classes_);
    if (output.get_element_type() == ov::element::f32) {
      std::copy(output.data<const float>(), output.data<const float>() + size, logits);
    } else {
      throw Error("the artifact's output is " + output.get_element_type().get_type_name() + ", not f32");
    }
    return elapsed;
  }

  std::string describe() const override {
    return "openvino " + std::string(ov::get_openvino_version().buildNumber) + ", " + device_ +
           ", inference precision " + precision_ + ", threads " + (threads_ ? std::to_string(threads_) : "default") +
           (static_ ? ", a static shape per batch size" : ", dynamic shapes");
  }

 private:
  struct Compiled {
    ov::CompiledModel model;
    ov::InferRequest request;
  };

  // batch 0: the model as it is (dynamic, or a static IR); else the model reshaped to that batch, compiled once.
  Compiled& compiled_for(std::int64_t batch) {
    const auto found = compiled_.find(batch);
    if (found != compiled_.end()) return found->second;
    try {
      std::shared_ptr<ov::Model> model = model_;
      if (batch > 0) {
        model = model_->clone();
        ov::PartialShape shape = {batch};
        for (auto dim : sample_shape_) shape.push_back(dim);
        model->reshape(shape);
      }
      ov::CompiledModel compiled = core_.compile_model(model, device_, config_);
      ov::InferRequest request = compiled.create_infer_request();
      return compiled_.emplace(batch, Compiled{std::move(compiled), std::move(request)}).first->second;
    } catch (const ov::Exception& error) {
      throw Error("openvino cannot compile the model for " + device_ + ": " + one_line(error.what()));
    }
  }

  ov::Core core_;
  std::shared_ptr<ov::Model> model_;
  ov::AnyMap config_;
  std::map<std::int64_t, Compiled> compiled_;
  std::string device_, precision_;
  bool static_ = false;
  int classes_;
  int threads_ = 0;
  std::vector<std::int64_t> sample_shape_;
};

}  // namespace

const char* backend_runtime() { return "openvino"; }

std::unique_ptr<Backend> make_backend(const std::filesystem::path& bundle, const Manifest& manifest,
                                      const RunnerOptions& options) {
  try {
    return std::make_unique<OpenVinoBackend>(bundle, manifest, options);
  } catch (const ov::Exception& error) {
    throw Error("openvino cannot load " + (bundle / manifest.artifact.path).string() + ": " + one_line(error.what()));
  }
}

}  // namespace mait
