// mait-deploy native runner: open a bundle (manifest checked against the bundle contract, every file hashed),
// preprocess images exactly as the Python device side does, run the bundle's runtime, check the golden set.
//
// One library per runtime (built-in or a backend plug-in's), chosen when it is built; the bundle says which
// it needs. Every failure is a mait::Error with a one-line message.
//
// Threads: a Runner may be shared between threads. run() and classify() take the runner's lock for the runtime
// call (each call gets its own answer; calls on one Runner run one at a time); open one Runner per thread for
// calls in parallel. The free functions below are thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

// The public API: exported from the shared library (everything else in it is hidden; CMakeLists.txt).
#pragma GCC visibility push(default)
namespace mait {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct FileEntry {
  std::string path;  // relative to the bundle folder
  std::string sha256;
  std::uint64_t bytes = 0;
};

struct PreprocessConfig {
  int input_size = 0;
  int channels = 0;  // 1 (grey) or 3 (RGB)
  std::vector<float> mean, std;
  std::string interpolation;  // nearest | bilinear | bicubic
  double crop_pct = 1.0;
};

struct GoldenArray {
  std::string name;   // images | inputs | logits | reference_logits
  std::string dtype;  // uint8 | float32
  std::vector<std::int64_t> shape;
  std::uint64_t offset = 0;
  std::uint64_t nbytes() const;
};

struct GoldenEntry {
  FileEntry file;
  std::int64_t count = 0;
  std::string kind;  // images | inputs
  double max_abs_diff = 0;
  double min_top1_agreement = 1;
  std::vector<GoldenArray> arrays;  // empty before manifest schema 3 (an .npz this runner does not read)
};

struct Manifest {
  int schema_version = 0;
  std::string target, precision, runtime;
  FileEntry artifact;
  std::vector<FileEntry> files;  // side files (an IR's weights file, ...)
  std::string input_name;
  std::vector<std::int64_t> sample_shape;  // [C, H, W]
  std::optional<std::int64_t> fixed_batch;  // none: any batch size
  int num_classes = 0;
  std::vector<std::string> labels;
  PreprocessConfig preprocess;
  std::string runtime_options_json;  // the manifest's runtime.options, as JSON text
  GoldenEntry golden;
};

// A manifest's model.preprocess object (JSON text) as a PreprocessConfig; throws mait::Error.
PreprocessConfig parse_preprocess(const std::string& json_text);
// Reads <bundle>/manifest.json, validates it against the bundle contract (the JSON Schema the Python side
// generates, compiled into this library) and the rules across fields. Throws mait::Error.
Manifest read_manifest(const std::filesystem::path& bundle);
// Checks every file the manifest lists (size, then sha256). Throws mait::Error naming the first that differs.
void check_files(const std::filesystem::path& bundle, const Manifest& manifest);
std::string sha256_file(const std::filesystem::path& path);
// A message on one line (some runtimes' span several), at most `limit` characters.
std::string one_line(const std::string& text, std::size_t limit = 400);
// User text (a label, a file name) safe to print on one line and valid UTF-8: control characters, backslashes and
// bytes that are not UTF-8 become \xNN escapes, so no name can forge an output line or break a JSON writer.
std::string printable(const std::string& text);

// Signed bundles: manifest.sig holds a DSSE envelope (payload: manifest.json's exact bytes) signed with Ed25519.
// Checks it against the trusted public key (a PEM file); the manifest in turn holds every file's sha256.
// Throws mait::Error when the bundle is unsigned, signed by another key, or its manifest differs from the payload.
constexpr const char* kSignatureFile = "manifest.sig";
constexpr const char* kTrustedKeyEnv = "MAIT_TRUSTED_KEY";  // a device setting, like the runner's --trust
void verify_signature(const std::filesystem::path& bundle, const std::filesystem::path& public_key);

// An 8-bit image, interleaved: height x width x channels (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA).
struct Image {
  int width = 0, height = 0, channels = 0;
  std::vector<std::uint8_t> pixels;
};
constexpr std::int64_t kMaxImagePixels = 40'000'000;  // as the Python side: a small file cannot decode to GBs
Image load_image(const std::filesystem::path& path);  // PNG, JPEG, BMP; regular files only
// The model input for one image, float32 [C, S, S]: mode conversion, shorter-side resize, centre crop and
// normalisation, computed as mait_deploy/device/preprocess.py computes them (Pillow's fixed-point resampling).
std::vector<float> preprocess(const Image& image, const PreprocessConfig& config);
// The resized, cropped 8-bit image before normalisation (what the parity test compares). The shorter-side resize
// of a very elongated image would be far larger than the image (1 x 16,000,000 px -> 32 x 512,000,000): every
// intermediate is held to kMaxImagePixels, as the Python side does, and refused in one line beyond it.
Image resize_crop(const Image& image, const PreprocessConfig& config);

struct Classification {
  int index = 0;
  std::string label;
  float score = 0;  // softmax probability of the top class
  std::vector<float> logits;
};

constexpr int kMaxThreads = 256;  // the Python side's bound (mait_deploy/options.py MAX_THREADS)

struct RunnerOptions {
  int threads = 0;          // 0: the runtime's default; else 1 to kMaxThreads
  bool check_hashes = true;
  // A trusted public key (PEM): the bundle must carry a valid signature by it (its files are then always hashed).
  // Empty: $MAIT_TRUSTED_KEY if set, else no signature is required.
  std::filesystem::path trusted_key;
};

// The runtime behind a Runner: internal to the library (src/internal.hpp), never exported.
#pragma GCC visibility push(hidden)
class Backend;
#pragma GCC visibility pop

class Runner {
 public:
  static Runner open(const std::filesystem::path& bundle, const RunnerOptions& options = {});
  Runner(Runner&&) noexcept;
  Runner& operator=(Runner&&) noexcept;
  ~Runner();

  // Logits [count, classes] for preprocessed inputs [count, C, H, W] (any count up to max_run_samples(); chunked
  // or padded as the artifact's batch needs). runtime_ms, when given: the runtime's own calls of this run, summed.
  std::vector<float> run(const float* inputs, std::int64_t count, double* runtime_ms = nullptr);
  // The most samples one run() takes: its logits and any padding stay within a bounded allocation.
  std::int64_t max_run_samples() const;
  std::vector<Classification> classify(const std::vector<Image>& images);

  const Manifest& manifest() const { return manifest_; }
  const std::filesystem::path& bundle() const { return bundle_; }
  std::string describe() const;  // the runtime, its version and what it runs with
  double last_runtime_ms() const;  // the runtime's own calls of the last run() on this Runner, summed
  std::int64_t sample_size() const;

 private:
  Runner(std::filesystem::path bundle, Manifest manifest, std::unique_ptr<Backend> backend);
  std::filesystem::path bundle_;
  Manifest manifest_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<std::mutex> lock_;  // one runtime call at a time (the backends keep one request each)
  double last_runtime_ms_ = 0;
};

// The golden set (schema 3's golden.bin): samples (raw uint8 images or float32 inputs) and the logits.
struct GoldenSet {
  std::string kind;
  std::int64_t count = 0;
  std::vector<std::int64_t> sample_shape;  // per sample
  std::vector<std::uint8_t> images;
  std::vector<float> inputs, logits, reference_logits;
};
GoldenSet read_golden(const std::filesystem::path& bundle, const Manifest& manifest);

struct VerifyReport {
  bool passed = false;
  std::int64_t count = 0;
  double max_abs_diff = 0, top1_agreement = 0;
  double tolerance_max_abs_diff = 0, tolerance_min_top1_agreement = 0;
  std::string message;  // one line
};
// Runs the golden set through this runner's whole path (preprocessing for raw images) with the manifest's
// tolerance, as `mait-deploy verify` does.
VerifyReport verify(Runner& runner);

}  // namespace mait
#pragma GCC visibility pop
