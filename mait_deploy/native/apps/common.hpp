// What the apps share: one-line errors, a small argv reader, the images under a path.
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "mait/mait.hpp"

namespace app {

namespace fs = std::filesystem;

// Runs `body`; any failure is one line on stderr and exit status 1 (2 for a usage error).
inline int guarded(const std::function<int()>& body) {
  try {
    return body();
  } catch (const mait::Error& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
  } catch (const std::invalid_argument& error) {
    std::fprintf(stderr, "usage error: %s\n", error.what());
    return 2;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: %s\n", mait::one_line(error.what()).c_str());
  }
  return 1;
}

// argv as flags (--name value, --switch) and positional arguments; unknown flags are usage errors.
struct Arguments {
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> flags;

  Arguments(int argc, char** argv, const std::vector<std::string>& with_value,
            const std::vector<std::string>& switches) {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg.rfind("--", 0) != 0) {
        positional.push_back(arg);
      } else if (std::find(switches.begin(), switches.end(), arg) != switches.end()) {
        flags.emplace_back(arg, "");
      } else if (std::find(with_value.begin(), with_value.end(), arg) != with_value.end()) {
        if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
        flags.emplace_back(arg, argv[++i]);
      } else {
        throw std::invalid_argument("unknown option " + arg);
      }
    }
  }
  bool has(const std::string& name) const {
    return std::any_of(flags.begin(), flags.end(), [&](const auto& flag) { return flag.first == name; });
  }
  long integer(const std::string& name, long fallback, long minimum) const {
    for (const auto& [key, value] : flags)
      if (key == name) {
        char* end = nullptr;
        const long parsed = std::strtol(value.c_str(), &end, 10);
        if (value.empty() || *end != '\0' || parsed < minimum)
          throw std::invalid_argument(name + " needs an integer >= " + std::to_string(minimum) + ", got '" + value +
                                      "'");
        return parsed;
      }
    return fallback;
  }
};

inline bool is_image(const fs::path& path) {
  std::string suffix = path.extension().string();
  std::transform(suffix.begin(), suffix.end(), suffix.begin(), [](unsigned char c) { return std::tolower(c); });
  return suffix == ".png" || suffix == ".jpg" || suffix == ".jpeg" || suffix == ".bmp";
}

// Files as given; folders walked (sorted) for .png/.jpg/.jpeg/.bmp.
inline std::vector<fs::path> images_under(const std::vector<std::string>& paths) {
  std::vector<fs::path> found;
  for (const auto& given : paths) {
    const fs::path path(given);
    if (fs::is_directory(path)) {
      std::vector<fs::path> inside;
      for (const auto& entry : fs::recursive_directory_iterator(path))
        if (entry.is_regular_file() && is_image(entry.path())) inside.push_back(entry.path());
      if (inside.empty()) throw mait::Error("no images (.png, .jpg, .jpeg, .bmp) in " + path.string());
      std::sort(inside.begin(), inside.end());
      found.insert(found.end(), inside.begin(), inside.end());
    } else {
      found.push_back(path);
    }
  }
  return found;
}

}  // namespace app
