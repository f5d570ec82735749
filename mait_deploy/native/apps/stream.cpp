// mait-stream BUNDLE --width W --height H [--pix-fmt gray|rgb24|rgba] [--frames N] [--threads N] [--trust KEY]
//                    [--json]
// The embedded loop: raw frames from standard input, the way a camera pipeline hands them over (FFmpeg's or
// GStreamer's rawvideo to stdout), one label per frame on stdout and, at the end, the sustained frames per second
// on stderr. Each frame goes through the same path as an image file (mode conversion, resize, crop, normalisation,
// the runtime), so a frame's label is the label of that frame saved losslessly as a PNG.
//
//   ffmpeg -f lavfi -i testsrc=size=320x240:rate=30 -pix_fmt rgb24 -f rawvideo - | mait-stream B --width 320 --height 240
//   gst-launch-1.0 -q v4l2src ! videoconvert ! video/x-raw,format=RGB,width=640,height=480 ! fdsink |
//       mait-stream B --width 640 --height 480
#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "common.hpp"

namespace {

int channels_of(const std::string& format) {
  if (format == "gray") return 1;
  if (format == "rgb24") return 3;
  if (format == "rgba") return 4;
  throw std::invalid_argument("--pix-fmt takes gray, rgb24 or rgba, got '" + mait::printable(format) + "'");
}

// Reads exactly `size` bytes; false at a clean end of the stream (nothing read), an error inside a frame.
bool read_frame(std::FILE* input, std::vector<std::uint8_t>& frame, long long number) {
  std::size_t got = 0;
  while (got < frame.size()) {
    const std::size_t read = std::fread(frame.data() + got, 1, frame.size() - got, input);
    if (read == 0) break;
    got += read;
  }
  if (got == 0 && std::feof(input)) return false;
  if (got < frame.size())
    throw mait::Error("the stream ended inside frame " + std::to_string(number) + " (" + std::to_string(got) +
                      " of " + std::to_string(frame.size()) + " bytes): are --width, --height and --pix-fmt the "
                      "producer's?");
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  return app::guarded([&] {
    const app::Arguments args(argc, argv, {"--width", "--height", "--pix-fmt", "--frames", "--threads", "--trust"},
                              {"--json"});
    if (args.positional.size() != 1 || !args.has("--width") || !args.has("--height"))
      throw std::invalid_argument("mait-stream BUNDLE --width W --height H [--pix-fmt gray|rgb24|rgba] "
                                  "[--frames N] [--threads N] [--trust KEY] [--json]  (raw frames on stdin)");
    mait::Image image;
    image.width = static_cast<int>(args.integer("--width", 0, 1, 65535));
    image.height = static_cast<int>(args.integer("--height", 0, 1, 65535));
    image.channels = channels_of(args.has("--pix-fmt") ? args.text("--pix-fmt") : "rgb24");
    if (static_cast<long long>(image.width) * image.height > mait::kMaxImagePixels)
      throw mait::Error("a " + std::to_string(image.width) + "x" + std::to_string(image.height) + " frame is over " +
                        std::to_string(mait::kMaxImagePixels / 1000000) + " MP");
    const long long limit = args.integer("--frames", 0, 1, 1LL << 40);  // 0: until the stream ends
    const bool as_json = args.has("--json");
    mait::Runner runner = mait::Runner::open(args.positional[0], args.runner_options());
    const mait::VerifyReport report = mait::verify(runner);  // the device agrees with the build, as mait-classify
    if (!report.passed) throw mait::Error(report.message);
    image.pixels.resize(static_cast<std::size_t>(image.width) * image.height * image.channels);

    long long frames = 0;
    double model_ms = 0;
    const auto started = std::chrono::steady_clock::now();
    while ((limit == 0 || frames < limit) && read_frame(stdin, image.pixels, frames)) {
      const mait::Classification result = runner.classify({image}).front();
      model_ms += runner.last_runtime_ms();
      if (as_json) {
        const nlohmann::json line = {{"frame", frames}, {"label", mait::printable(result.label)},
                                     {"index", result.index}, {"score", result.score}};
        std::printf("%s\n", line.dump().c_str());
      } else {
        std::printf("%lld %s %.3f\n", frames, mait::printable(result.label).c_str(), result.score);
      }
      ++frames;
    }
    std::fflush(stdout);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (frames == 0) throw mait::Error("no frame on standard input");
    std::fprintf(stderr, "%lld frames in %.2f s: %.1f frames/s sustained (runtime %.2f ms per frame)\n", frames,
                 seconds, static_cast<double>(frames) / seconds, model_ms / static_cast<double>(frames));
    return 0;
  });
}
