// The C ABI over mait::Runner (include/mait/mait_c.h): exceptions end here, as a return code and one line.
#include <cstdint>
#include <cstring>
#include <exception>
#include <new>

#include "internal.hpp"
#include "mait/mait_c.h"

struct mait_runner {
  mait::Runner runner;
};

namespace {

void copy_text(const std::string& text, char* out, size_t size) {
  if (out == nullptr || size == 0) return;
  const size_t length = std::min(text.size(), size - 1);
  std::memcpy(out, text.data(), length);
  out[length] = '\0';
}

template <typename Call>
int guarded(char* error, size_t error_size, Call call) {
  try {
    call();
    return 0;
  } catch (const std::bad_alloc&) {
    copy_text("out of memory", error, error_size);
  } catch (const std::exception& failure) {
    copy_text(mait::one_line(mait::printable(failure.what())), error, error_size);  // valid UTF-8 for any caller
  } catch (...) {
    copy_text("unknown error", error, error_size);
  }
  return 1;
}

}  // namespace

extern "C" {

int mait_abi_version(void) { return MAIT_ABI_VERSION; }

const char* mait_runtime(void) { return mait::backend_runtime(); }

int mait_runner_open(const char* bundle, int threads, int check_hashes, mait_runner** out, char* error,
                     size_t error_size) {
  return guarded(error, error_size, [&] {
    if (bundle == nullptr || out == nullptr) throw mait::Error("no bundle given");
    mait::RunnerOptions options;
    options.threads = threads;
    options.check_hashes = check_hashes != 0;
    *out = new mait_runner{mait::Runner::open(bundle, options)};
  });
}

int mait_runner_run(mait_runner* runner, const float* inputs, int64_t count, float* logits, size_t capacity,
                    double* runtime_ms, char* error, size_t error_size) {
  return guarded(error, error_size, [&] {
    if (runner == nullptr || inputs == nullptr || logits == nullptr) throw mait::Error("null argument");
    const auto classes = static_cast<std::uint64_t>(runner->runner.manifest().num_classes);
    if (count <= 0) throw mait::Error("empty batch: no images given");
    if (static_cast<std::uint64_t>(count) > capacity / classes)
      throw mait::Error("the logits buffer holds " + std::to_string(capacity) + " floats; " +
                        std::to_string(count) + " samples need " + std::to_string(classes) + " each");
    double spent = 0;  // this call's own time (another thread's run may follow before it is read)
    const std::vector<float> result = runner->runner.run(inputs, count, &spent);
    std::copy(result.begin(), result.end(), logits);
    if (runtime_ms != nullptr) *runtime_ms = spent;
  });
}

int mait_runner_shape(const mait_runner* runner, int64_t* classes, int64_t* shape) {
  if (runner == nullptr || classes == nullptr || shape == nullptr) return 1;
  *classes = runner->runner.manifest().num_classes;
  const auto& sample = runner->runner.manifest().sample_shape;
  std::copy(sample.begin(), sample.end(), shape);
  return 0;
}

void mait_runner_describe(const mait_runner* runner, char* text, size_t size) {
  copy_text(runner != nullptr ? runner->runner.describe() : std::string(), text, size);
}

void mait_runner_close(mait_runner* runner) { delete runner; }

}  // extern "C"
