// mait-preprocess BUNDLE_OR_CONFIG IMAGE OUT: the model input this build makes from IMAGE (float32,
// little-endian, [C, S, S]) written to OUT, for the parity test against the Python device side. The settings are
// a bundle's (its manifest's model.preprocess) or a JSON file holding such an object.
#include <fstream>
#include <iterator>

#include "common.hpp"

int main(int argc, char** argv) {
  return app::guarded([&] {
    const app::Arguments args(argc, argv, {}, {});
    if (args.positional.size() != 3) throw std::invalid_argument("mait-preprocess BUNDLE_OR_CONFIG IMAGE OUT");
    const std::filesystem::path settings(args.positional[0]);
    mait::PreprocessConfig config;
    if (std::filesystem::is_directory(settings)) {
      config = mait::read_manifest(settings).preprocess;
    } else {
      std::ifstream file(settings);
      if (!file) throw mait::Error("cannot read " + settings.string());
      const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
      config = mait::parse_preprocess(text);
    }
    const std::vector<float> tensor = mait::preprocess(mait::load_image(args.positional[1]), config);
    std::ofstream out(args.positional[2], std::ios::binary);
    out.write(reinterpret_cast<const char*>(tensor.data()), static_cast<std::streamsize>(tensor.size() * sizeof(float)));
    if (!out) throw mait::Error("cannot write " + args.positional[2]);
    return 0;
  });
}
