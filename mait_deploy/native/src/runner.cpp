// The runner: a bundle opened once (manifest checked, files hashed, runtime loaded with the manifest's options),
// inputs checked against the manifest, chunked or padded to what the artifact takes.
#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "internal.hpp"

namespace mait {
namespace fs = std::filesystem;

constexpr std::int64_t kMaxBatch = 1024;  // larger requests are split, as the Python runner's max_batch
// One run() allocates its logits (and a fixed-batch padding): bounded, so that a count from a caller never asks
// for more than this many floats (or overflows the size computation) before anything is allocated.
constexpr std::int64_t kMaxRunFloats = std::int64_t{1} << 28;  // 1 GiB of float32

Runner::Runner(fs::path bundle, Manifest manifest, std::unique_ptr<Backend> backend)
    : bundle_(std::move(bundle)), manifest_(std::move(manifest)), backend_(std::move(backend)),
      lock_(std::make_unique<std::mutex>()) {}
Runner::Runner(Runner&&) noexcept = default;
Runner& Runner::operator=(Runner&&) noexcept = default;
Runner::~Runner() = default;

Runner Runner::open(const fs::path& bundle, const RunnerOptions& options) {
  if (options.threads < 0 || options.threads > kMaxThreads)
    throw Error("threads must be from 1 to " + std::to_string(kMaxThreads) + ", got " +
                std::to_string(options.threads));
  fs::path key = options.trusted_key;
  if (key.empty()) {
    const char* from_environment = std::getenv(kTrustedKeyEnv);
    if (from_environment != nullptr && *from_environment != '\0') key = from_environment;
  }
  // A trusted key: the signature first, so nothing of an unsigned bundle is read beyond its manifest's bytes.
  if (!key.empty()) verify_signature(bundle, key);
  Manifest manifest = read_manifest(bundle);
  if (manifest.runtime != backend_runtime())
    throw Error(bundle.string() + " is a " + manifest.runtime + " bundle; this runner was built for " +
                backend_runtime() + " (generate the app for this bundle: mait-deploy app BUNDLE -o DIR)");
  if (options.check_hashes || !key.empty()) check_files(bundle, manifest);  // a signature covers the hashes only
  std::unique_ptr<Backend> backend = make_backend(bundle, manifest, options);
  return Runner(bundle, std::move(manifest), std::move(backend));
}

std::int64_t Runner::sample_size() const {
  std::int64_t size = 1;
  for (auto dim : manifest_.sample_shape) size *= dim;
  return size;
}

std::string Runner::describe() const { return backend_->describe(); }
double Runner::last_runtime_ms() const {
  std::lock_guard<std::mutex> hold(*lock_);
  return last_runtime_ms_;
}

std::int64_t Runner::max_run_samples() const {
  const std::int64_t per_sample = std::max<std::int64_t>({sample_size(), manifest_.num_classes, 1});
  return kMaxRunFloats / per_sample;
}

std::vector<float> Runner::run(const float* inputs, std::int64_t count, double* runtime_ms) {
  if (count <= 0) throw Error("empty batch: no images given");
  if (count > max_run_samples())
    throw Error("a run takes at most " + std::to_string(max_run_samples()) + " samples of this model; got " +
                std::to_string(count) + " (split it)");
  const std::int64_t sample = sample_size();
  for (std::int64_t i = 0; i < count * sample; ++i)
    if (!std::isfinite(inputs[i])) throw Error("model input contains NaN or Inf");
  const int classes = manifest_.num_classes;
  const std::int64_t chunk = manifest_.fixed_batch.value_or(kMaxBatch);
  std::vector<float> logits(static_cast<std::size_t>(count * classes));
  std::vector<float> padded, padded_logits;
  std::lock_guard<std::mutex> hold(*lock_);
  double spent = 0;
  for (std::int64_t start = 0; start < count; start += chunk) {
    const std::int64_t part = std::min(chunk, count - start);
    const float* source = inputs + start * sample;
    float* target = logits.data() + start * classes;
    if (manifest_.fixed_batch && part < chunk) {  // a fixed-batch artifact takes exactly its batch: pad with zeros
      padded.assign(static_cast<std::size_t>(chunk * sample), 0.0f);
      std::copy(source, source + part * sample, padded.begin());
      padded_logits.resize(static_cast<std::size_t>(chunk * classes));
      spent += backend_->infer(padded.data(), chunk, padded_logits.data());
      std::copy(padded_logits.begin(), padded_logits.begin() + part * classes, target);
    } else {
      spent += backend_->infer(source, part, target);
    }
  }
  last_runtime_ms_ = spent;
  if (runtime_ms != nullptr) *runtime_ms = spent;
  return logits;
}

std::vector<Classification> Runner::classify(const std::vector<Image>& images) {
  if (images.empty()) throw Error("no images given");
  const std::int64_t sample = sample_size();
  if (static_cast<std::int64_t>(images.size()) > max_run_samples())
    throw Error("at most " + std::to_string(max_run_samples()) + " images per call");
  std::vector<float> batch;
  batch.reserve(static_cast<std::size_t>(sample) * images.size());
  for (const auto& image : images) {
    const std::vector<float> tensor = preprocess(image, manifest_.preprocess);
    batch.insert(batch.end(), tensor.begin(), tensor.end());
  }
  const std::int64_t count = static_cast<std::int64_t>(images.size());
  const std::vector<float> logits = run(batch.data(), count);
  const int classes = manifest_.num_classes;
  std::vector<Classification> results;
  for (std::int64_t i = 0; i < count; ++i) {
    Classification result;
    result.logits.assign(logits.begin() + i * classes, logits.begin() + (i + 1) * classes);
    const auto top = std::max_element(result.logits.begin(), result.logits.end());
    result.index = static_cast<int>(top - result.logits.begin());
    double total = 0;
    for (float value : result.logits) total += std::exp(static_cast<double>(value) - *top);
    result.score = static_cast<float>(1.0 / total);
    result.label = manifest_.labels[static_cast<std::size_t>(result.index)];
    results.push_back(std::move(result));
  }
  return results;
}

}  // namespace mait
