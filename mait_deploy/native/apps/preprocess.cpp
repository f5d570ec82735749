// mait-preprocess BUNDLE IMAGE OUT: the model input this build makes from IMAGE (float32, little-endian,
// [C, S, S]) written to OUT, for the parity test against the Python device side.
#include <fstream>

#include "common.hpp"

int main(int argc, char** argv) {
  return app::guarded([&] {
    const app::Arguments args(argc, argv, {}, {});
    if (args.positional.size() != 3) throw std::invalid_argument("mait-preprocess BUNDLE IMAGE OUT");
    const mait::Manifest manifest = mait::read_manifest(args.positional[0]);
    const std::vector<float> tensor = mait::preprocess(mait::load_image(args.positional[1]), manifest.preprocess);
    std::ofstream out(args.positional[2], std::ios::binary);
    out.write(reinterpret_cast<const char*>(tensor.data()), static_cast<std::streamsize>(tensor.size() * sizeof(float)));
    if (!out) throw mait::Error("cannot write " + args.positional[2]);
    return 0;
  });
}
