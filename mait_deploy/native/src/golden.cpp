// The golden set (manifest schema 3's golden.bin: little-endian arrays packed back to back, laid out in the
// manifest) and the check `mait-deploy verify` makes with it.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

#include "internal.hpp"

namespace mait {
namespace fs = std::filesystem;

GoldenSet read_golden(const fs::path& bundle, const Manifest& manifest) {
  const GoldenEntry& entry = manifest.golden;
  if (entry.arrays.empty())
    throw Error(bundle.string() + ": the golden set is " + entry.file.path + " (manifest schema " +
                std::to_string(manifest.schema_version) + "); the native runner reads schema 3's golden.bin: "
                "rebuild the bundle with this mait-deploy");
  const fs::path path = bundle / entry.file.path;
  std::uint64_t expected = 0;
  for (const auto& array : entry.arrays) {
    if (array.nbytes() > (std::uint64_t{1} << 34) - expected)
      throw Error(path.string() + ": golden layout is larger than 16 GiB");
    expected += array.nbytes();
  }
  std::error_code error;
  const auto size = fs::file_size(path, error);
  if (error) throw Error("cannot read golden set " + path.string() + " (" + error.message() + ")");
  if (size != expected)
    throw Error(path.string() + ": golden file is " + std::to_string(size) + " bytes; its manifest lays out " +
                std::to_string(expected));
  std::ifstream stream(path, std::ios::binary);
  GoldenSet golden;
  golden.kind = entry.kind;
  golden.count = entry.count;
  for (const auto& array : entry.arrays) {
    stream.seekg(static_cast<std::streamoff>(array.offset));
    std::vector<char> bytes(array.nbytes());
    if (!stream.read(bytes.data(), static_cast<std::streamsize>(bytes.size())))
      throw Error("cannot read golden set " + path.string());
    if (array.name == "images") {
      golden.images.assign(bytes.begin(), bytes.end());
      golden.sample_shape.assign(array.shape.begin() + 1, array.shape.end());
    } else {
      std::vector<float> values(bytes.size() / sizeof(float));
      std::memcpy(values.data(), bytes.data(), bytes.size());  // little-endian on every target (checked in CMake)
      if (array.name == "inputs") {
        golden.sample_shape.assign(array.shape.begin() + 1, array.shape.end());
        golden.inputs = std::move(values);
      } else if (array.name == "logits") {
        golden.logits = std::move(values);
      } else {
        golden.reference_logits = std::move(values);
      }
    }
  }
  return golden;
}

namespace {

// Golden raw images are [N, H, W] (grey) or [N, H, W, C], as the dataset stores them.
std::vector<Image> golden_images(const GoldenSet& golden) {
  const auto& shape = golden.sample_shape;
  if (shape.size() != 2 && shape.size() != 3) throw Error("golden images must be [N, H, W] or [N, H, W, C]");
  const int channels = shape.size() == 3 ? static_cast<int>(shape[2]) : 1;
  if (channels < 1 || channels > 4) throw Error("golden images must have 1 to 4 channels");
  std::vector<Image> images;
  const std::size_t each = static_cast<std::size_t>(shape[0] * shape[1] * channels);
  for (std::int64_t i = 0; i < golden.count; ++i) {
    Image image{static_cast<int>(shape[1]), static_cast<int>(shape[0]), channels, {}};
    image.pixels.assign(golden.images.begin() + static_cast<std::ptrdiff_t>(i * each),
                        golden.images.begin() + static_cast<std::ptrdiff_t>((i + 1) * each));
    images.push_back(std::move(image));
  }
  return images;
}

int argmax(const float* row, int width) {
  return static_cast<int>(std::max_element(row, row + width) - row);
}

}  // namespace

VerifyReport verify(Runner& runner) {
  const Manifest& manifest = runner.manifest();
  const GoldenSet golden = read_golden(runner.bundle(), manifest);
  std::vector<float> logits;
  if (golden.kind == "images") {
    for (const auto& result : runner.classify(golden_images(golden)))
      logits.insert(logits.end(), result.logits.begin(), result.logits.end());
  } else {
    if (golden.sample_shape != manifest.sample_shape) throw Error("golden inputs do not match the model's input");
    logits = runner.run(golden.inputs.data(), golden.count);
  }
  VerifyReport report;
  report.count = golden.count;
  report.tolerance_max_abs_diff = manifest.golden.max_abs_diff;
  report.tolerance_min_top1_agreement = manifest.golden.min_top1_agreement;
  const int classes = manifest.num_classes;
  std::int64_t agree = 0;
  for (std::int64_t i = 0; i < golden.count; ++i) {
    const float* mine = logits.data() + i * classes;
    const float* recorded = golden.logits.data() + i * classes;
    for (int j = 0; j < classes; ++j) {
      const double diff = std::fabs(static_cast<double>(mine[j]) - recorded[j]);
      report.max_abs_diff = std::isnan(diff) ? INFINITY : std::max(report.max_abs_diff, diff);
    }
    agree += argmax(mine, classes) == argmax(recorded, classes);
  }
  report.top1_agreement = golden.count ? static_cast<double>(agree) / static_cast<double>(golden.count) : 0;
  report.passed = report.max_abs_diff <= report.tolerance_max_abs_diff &&
                  report.top1_agreement >= report.tolerance_min_top1_agreement;
  char line[320];
  std::snprintf(line, sizeof line,
                "golden outputs %s on this device: %lld images, max |diff| %.3g (tolerance %.3g), top-1 agreement "
                "%.1f%% (needs %.1f%%)",
                report.passed ? "match" : "do not match", static_cast<long long>(report.count), report.max_abs_diff,
                report.tolerance_max_abs_diff, report.top1_agreement * 100, report.tolerance_min_top1_agreement * 100);
  report.message = line;
  return report;
}

}  // namespace mait
