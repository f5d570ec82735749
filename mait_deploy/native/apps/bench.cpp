// mait-bench BUNDLE [--batch N] [--iterations N] [--warmup N] [--threads N]
// Latency of Runner::run on random inputs beside the runtime call inside it (their ratio is the runner's
// overhead), and the process's peak RSS: one JSON object on stdout.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <random>
#include <string>

#include <sys/resource.h>

#include <nlohmann/json.hpp>

#include "common.hpp"

namespace {

double percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const double position = q * static_cast<double>(values.size() - 1);
  const auto low = static_cast<std::size_t>(position);
  const std::size_t high = std::min(low + 1, values.size() - 1);
  return values[low] + (values[high] - values[low]) * (position - static_cast<double>(low));
}

// This program's own peak resident set size (MB): Linux's VmHWM, which exec resets. Not ru_maxrss: Linux carries
// it across exec from the parent's at fork, so mait-bench started by a large process would report that process's
// size. ru_maxrss only where /proc does not say.
double peak_rss_mb() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // "VmHWM:    1234 kB"
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

}  // namespace

int main(int argc, char** argv) {
  return app::guarded([&] {
    const app::Arguments args(argc, argv, {"--batch", "--iterations", "--warmup", "--threads", "--trust"}, {});
    if (args.positional.size() != 1)
      throw std::invalid_argument(
          "mait-bench BUNDLE [--batch N] [--iterations N] [--warmup N] [--threads N] [--trust KEY]");
    const long long iterations = args.integer("--iterations", 200, 1, 1'000'000),
                    warmup = args.integer("--warmup", 20, 0, 1'000'000);
    mait::Runner runner = mait::Runner::open(args.positional[0], args.runner_options());
    const long long batch = args.integer("--batch", 1, 1, runner.max_run_samples());
    std::vector<float> inputs(static_cast<std::size_t>(batch * runner.sample_size()));
    std::mt19937 generator(0);
    std::normal_distribution<float> normal;
    for (float& value : inputs) value = normal(generator);
    std::vector<double> total, runtime;
    for (long long i = 0; i < warmup + iterations; ++i) {
      const auto started = std::chrono::steady_clock::now();
      double runtime_ms = 0;
      runner.run(inputs.data(), batch, &runtime_ms);
      const double took = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
      if (i >= warmup) {
        total.push_back(took);
        runtime.push_back(runtime_ms);
      }
    }
    const double p50 = percentile(total, 0.5), runtime_p50 = percentile(runtime, 0.5);
    const nlohmann::json report = {
        {"runtime", runner.describe()},  {"batch", batch},
        {"iterations", iterations},      {"p50_ms", p50},
        {"p99_ms", percentile(total, 0.99)}, {"runtime_call_p50_ms", runtime_p50},
        {"overhead", p50 / runtime_p50 - 1.0}, {"throughput", static_cast<double>(batch) / p50 * 1000.0},
        {"peak_rss_mb", peak_rss_mb()}};
    std::printf("%s\n", report.dump().c_str());
    return 0;
  });
}
