// The interface a runtime's native backend implements: what mait_deploy/backends/<runtime>/native/backend.cpp
// defines (beside its find.cmake, which finds the runtime's SDK and defines the target mait_runtime). One backend
// is compiled into each build of the runner (CMakeLists.txt picks the bundle's runtime); docs/architecture.md shows
// how a plug-in adds one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "mait/mait.hpp"

namespace mait {

// Internal to the library: never exported from its shared forms (mait.hpp declares it hidden).
class Backend {
 public:
  virtual ~Backend() = default;
  // One runtime call on exactly `count` samples ([count, C, H, W] floats); writes [count, classes] logits and
  // returns the runtime call's own duration in milliseconds (the runner's overhead is measured around it). The
  // Runner serialises the calls (one at a time per backend). Failures throw mait::Error with one line.
  virtual double infer(const float* inputs, std::int64_t count, float* logits) = 0;
  // The runtime, its version and what it runs with (one line).
  virtual std::string describe() const = 0;
};

// Defined by the backend compiled into this library.
std::unique_ptr<Backend> make_backend(const std::filesystem::path& bundle, const Manifest& manifest,
                                      const RunnerOptions& options);
const char* backend_runtime();  // the runtime this library was built for: its registry name

}  // namespace mait
