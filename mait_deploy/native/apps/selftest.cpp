// mait-selftest BUNDLE [--threads N] [--trust KEY]: the bundle's golden set through this build's whole path (hashes,
// preprocessing, runtime) with the manifest's tolerance, as `mait-deploy verify` does. Registered with CTest.
#include "common.hpp"

int main(int argc, char** argv) {
  return app::guarded([&] {
    const app::Arguments args(argc, argv, {"--threads", "--trust"}, {});
    if (args.positional.size() != 1) throw std::invalid_argument("mait-selftest BUNDLE [--threads N] [--trust KEY]");
    mait::Runner runner = mait::Runner::open(args.positional[0], args.runner_options());
    const std::string name = mait::printable(args.positional[0]);
    const mait::VerifyReport report = mait::verify(runner);
    if (!report.passed) throw mait::Error(name + ": " + report.message);
    std::printf("%s: %s\n%s\n", name.c_str(), runner.describe().c_str(), report.message.c_str());
    return 0;
  });
}
