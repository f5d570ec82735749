// ExecuTorch through its Module API (extension/module/module.h), the program's forward method on the CPU with
// the XNNPACK delegate the program was lowered to. The program has a static batch (the manifest's); the runner
// chunks and pads to it. No runtime options.
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/platform/platform.h>

#include <cstring>
#include <mutex>

#include "internal.hpp"

// The wheel ships the thread pool's library but not its header (extension/threadpool/threadpool.h): the two
// declarations used here, as that header has them.
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  size_t get_thread_count() const;
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

namespace mait {
namespace {

namespace et = ::executorch;

// ExecuTorch logs to stderr through its platform layer (cpuinfo's probing at every start, among others): the
// runner's contract is one error line, so its debug and info messages are dropped and its last error message is
// kept for the runner's own error, which names it.
std::mutex log_mutex;
std::string last_log_error;

void keep_errors(et_timestamp_t, et_pal_log_level_t level, const char*, const char*, size_t, const char* message,
                 size_t length) {
  if (level != kError && level != kFatal) return;
  std::lock_guard<std::mutex> lock(log_mutex);
  last_log_error.assign(message, length);
}

void quiet_logging() {
  static const bool registered = et::runtime::register_pal(et::runtime::PalImpl::create(keep_errors, __FILE__));
  (void)registered;
}

std::string error_text(et::runtime::Error error) {
  std::string text = et::runtime::to_string(error);
  std::lock_guard<std::mutex> lock(log_mutex);
  if (!last_log_error.empty()) text += ": " + one_line(printable(last_log_error), 200);  // it may quote program bytes
  last_log_error.clear();
  return text;
}

class ExecuTorchBackend final : public Backend {
 public:
  ExecuTorchBackend(const std::filesystem::path& bundle, const Manifest& manifest, const RunnerOptions& options)
      : module_((quiet_logging(), (bundle / manifest.artifact.path).string()),
                et::extension::Module::LoadMode::Mmap),
        classes_(manifest.num_classes), sample_shape_(manifest.sample_shape) {
    auto* pool = et::extension::threadpool::get_threadpool();
    if (pool != nullptr && options.threads > 0) pool->_unsafe_reset_threadpool(static_cast<uint32_t>(options.threads));
    threads_ = pool != nullptr ? pool->get_thread_count() : 1;
    // The flatbuffer verifier over the whole program first: the default (Minimal) lets a corrupted program reach
    // the kernels, where it crashes instead of failing.
    const auto verified = module_.load(et::runtime::Program::Verification::InternalConsistency);
    if (verified != et::runtime::Error::Ok)
      throw Error("executorch refuses " + manifest.artifact.path + " (" + error_text(verified) + ")");
    const auto loaded = module_.load_forward();
    if (loaded != et::runtime::Error::Ok)
      throw Error("executorch cannot load the forward method of " + manifest.artifact.path + " (" +
                  error_text(loaded) + ")");
    const auto meta = module_.method_meta("forward");
    if (!meta.ok()) throw Error("executorch: no metadata for forward (" + error_text(meta.error()) + ")");
    const auto input = meta->input_tensor_meta(0);
    if (!input.ok()) throw Error("executorch: forward takes no tensor input");
    if (input->scalar_type() != et::aten::ScalarType::Float) throw Error("the program's input is not float32");
    for (auto size : input->sizes()) input_shape_.push_back(size);
  }

  double infer(const float* inputs, std::int64_t count, float* logits) override {
    std::vector<et::aten::SizesType> shape = {static_cast<et::aten::SizesType>(count)};
    for (auto dim : sample_shape_) shape.push_back(static_cast<et::aten::SizesType>(dim));
    if (shape.size() != input_shape_.size() || !std::equal(shape.begin(), shape.end(), input_shape_.begin()))
      throw Error("the program takes a batch of " + std::to_string(input_shape_.empty() ? 0 : input_shape_[0]) +
                  ", got " + std::to_string(count));
    // The caller's buffer, not a copy (the program reads its input only).
    auto tensor = et::extension::from_blob(const_cast<float*>(inputs), shape, et::aten::ScalarType::Float);
    const auto started = std::chrono::steady_clock::now();
    const auto result = module_.forward(tensor);
    const double elapsed = milliseconds_since(started);
    if (!result.ok()) throw Error("executorch: forward failed (" + error_text(result.error()) + ")");
    if (result->empty() || !result->at(0).isTensor()) throw Error("executorch: forward returned no tensor");
    const auto& out = result->at(0).toTensor();
    if (out.dim() != 2 || out.size(0) != count || out.size(1) != classes_ ||
        out.scalar_type() != et::aten::ScalarType::Float)
      throw Error("the program gives outputs of shape [" + std::to_string(out.dim() > 0 ? out.size(0) : 0) + ", " +
                  std::to_string(out.dim() > 1 ? out.size(1) : 0) + "]; its manifest promises [N, " +
                  std::to_string(classes_) + "] float32");
    std::memcpy(logits, out.const_data_ptr<float>(), static_cast<std::size_t>(count * classes_) * sizeof(float));
    return elapsed;
  }

  std::string describe() const override {
    return std::string("executorch (Module API), XNNPACK delegate, threads ") + std::to_string(threads_);
  }

 private:
  et::extension::Module module_;
  int classes_;
  std::vector<std::int64_t> sample_shape_;
  std::vector<std::int64_t> input_shape_;
  std::size_t threads_ = 1;
};

}  // namespace

const char* backend_runtime() { return "executorch"; }

std::unique_ptr<Backend> make_backend(const std::filesystem::path& bundle, const Manifest& manifest,
                                      const RunnerOptions& options) {
  return std::make_unique<ExecuTorchBackend>(bundle, manifest, options);
}

}  // namespace mait
