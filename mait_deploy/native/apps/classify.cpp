// mait-classify BUNDLE IMAGE_OR_FOLDER... [--threads N] [--trust KEY] [--json] [--no-verify]
// Classifies images with a bundle, one line per image (as examples/classify.py). At start-up it checks the
// bundle's golden set on this device and refuses to classify if the device disagrees with the build.
#include <chrono>

#include <nlohmann/json.hpp>

#include "common.hpp"

int main(int argc, char** argv) {
  return app::guarded([&] {
    const app::Arguments args(argc, argv, {"--threads", "--trust"}, {"--json", "--no-verify"});
    if (args.positional.size() < 2)
      throw std::invalid_argument(
          "mait-classify BUNDLE IMAGE_OR_FOLDER... [--threads N] [--trust KEY] [--json] [--no-verify]");
    mait::Runner runner = mait::Runner::open(args.positional[0], args.runner_options());
    if (!args.has("--no-verify")) {
      const mait::VerifyReport report = mait::verify(runner);
      if (!report.passed) throw mait::Error(report.message);
      std::fprintf(stderr, "%s\n", report.message.c_str());
    }
    const bool as_json = args.has("--json");
    for (const auto& path : app::images_under({args.positional.begin() + 1, args.positional.end()})) {
      const auto started = std::chrono::steady_clock::now();
      mait::Classification result;
      try {
        result = runner.classify({mait::load_image(path)}).front();
      } catch (const mait::Error& error) {  // name the image (load_image does; the resize and the runtime do not)
        const std::string message = error.what(), name = mait::printable(path.string());
        throw mait::Error(message.find(name) == std::string::npos ? name + ": " + message : message);
      }
      const double total_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
      if (as_json) {
        // Names as valid UTF-8 (other bytes as \xNN): a file name can be any bytes, a JSON string cannot.
        nlohmann::json line = {{"image", mait::printable(path.string())}, {"label", mait::printable(result.label)},
                               {"index", result.index},        {"score", result.score},
                               {"inference_ms", runner.last_runtime_ms()}, {"total_ms", total_ms},
                               {"logits", result.logits}};
        std::printf("%s\n", line.dump().c_str());
      } else {
        std::printf("%s: %s (%.2f) %.2f ms\n", mait::printable(path.filename().string()).c_str(),
                    mait::printable(result.label).c_str(), result.score, runner.last_runtime_ms());
      }
    }
    return 0;
  });
}
