// The smallest app on the installed SDK: open a bundle, check its golden set, classify the images given.
#include <iostream>

#include <mait/mait.hpp>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage error: mait-sdk-example BUNDLE [IMAGE...]\n";
    return 2;
  }
  try {
    mait::Runner runner = mait::Runner::open(argv[1]);
    const mait::VerifyReport check = mait::verify(runner);
    std::cout << runner.describe() << "\n" << check.message << "\n";
    if (!check.passed) return 1;
    for (int i = 2; i < argc; ++i) {
      const auto result = runner.classify({mait::load_image(argv[i])});
      std::cout << mait::printable(argv[i]) << ": " << mait::printable(result.at(0).label) << " "
                << result.at(0).score << "\n";
    }
    return 0;
  } catch (const mait::Error& failure) {
    std::cerr << "error: " << mait::one_line(failure.what()) << "\n";
    return 1;
  }
}
