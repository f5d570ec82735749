// mait-threads BUNDLE [--workers N] [--calls N] [--threads N] [--trust KEY]
// One Runner shared by N threads, each call on its own random input, every answer checked against the same input
// run alone first: what the library promises an app (mait.hpp: "a Runner may be shared between threads").
// Prints one JSON object; exit 1 when any call got another call's answer. The tests run it under TSan too.
#include <atomic>
#include <cmath>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "common.hpp"

int main(int argc, char** argv) {
  return app::guarded([&] {
    const app::Arguments args(argc, argv, {"--workers", "--calls", "--threads", "--trust"}, {});
    if (args.positional.size() != 1)
      throw std::invalid_argument("mait-threads BUNDLE [--workers N] [--calls N] [--threads N] [--trust KEY]");
    const long long workers = args.integer("--workers", 4, 1, 64), calls = args.integer("--calls", 120, 1, 100'000);
    mait::Runner runner = mait::Runner::open(args.positional[0], args.runner_options());
    const std::int64_t sample = runner.sample_size();
    const auto classes = static_cast<std::size_t>(runner.manifest().num_classes);
    // Distinct inputs (one per call) and their answers computed one at a time.
    constexpr int kDistinct = 8;
    std::vector<std::vector<float>> inputs(kDistinct, std::vector<float>(static_cast<std::size_t>(sample)));
    std::mt19937 generator(0);
    std::normal_distribution<float> normal;
    for (auto& input : inputs)
      for (float& value : input) value = normal(generator);
    std::vector<std::vector<float>> expected;
    for (const auto& input : inputs) expected.push_back(runner.run(input.data(), 1));
    std::atomic<long long> next{0}, wrong{0}, failed{0};
    std::vector<std::thread> pool;
    for (long long w = 0; w < workers; ++w)
      pool.emplace_back([&] {
        for (long long call = next++; call < calls; call = next++) {
          const auto which = static_cast<std::size_t>(call % kDistinct);
          try {
            const std::vector<float> got = runner.run(inputs[which].data(), 1);
            for (std::size_t k = 0; k < classes; ++k)
              if (std::fabs(got[k] - expected[which][k]) > 1e-4f) {
                ++wrong;
                break;
              }
          } catch (const std::exception&) {
            ++failed;
          }
        }
      });
    for (auto& thread : pool) thread.join();
    const nlohmann::json report = {{"runtime", runner.describe()}, {"workers", workers}, {"calls", calls},
                                   {"wrong", wrong.load()}, {"failed", failed.load()}};
    std::printf("%s\n", report.dump().c_str());
    if (wrong.load() != 0 || failed.load() != 0)
      throw mait::Error(std::to_string(wrong.load()) + " of " + std::to_string(calls) + " calls got another answer, " +
                        std::to_string(failed.load()) + " failed");
    return 0;
  });
}
