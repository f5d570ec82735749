// mait-selftest BUNDLE [--threads N]: the bundle's golden set through this build's whole path (hashes,
// preprocessing, runtime) with the manifest's tolerance, as `mait-deploy verify` does. Registered with CTest.
#include "common.hpp"

int main(int argc, char** argv) {
  return app::guarded([&] {
    const app::Arguments args(argc, argv, {"--threads"}, {});
    if (args.positional.size() != 1) throw std::invalid_argument("mait-selftest BUNDLE [--threads N]");
    mait::RunnerOptions options;
    options.threads = static_cast<int>(args.integer("--threads", 0, 1));
    mait::Runner runner = mait::Runner::open(args.positional[0], options);
    const mait::VerifyReport report = mait::verify(runner);
    if (!report.passed) throw mait::Error(args.positional[0] + ": " + report.message);
    std::printf("%s: %s\n%s\n", args.positional[0].c_str(), runner.describe().c_str(), report.message.c_str());
    return 0;
  });
}
