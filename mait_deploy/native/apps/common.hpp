// What the apps share: one-line errors, a small argv reader, the images under a path.
#pragma once

#include <algorithm>
#include <cerrno>
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
  } catch (const std::bad_alloc&) {  // the bounds should make this unreachable; never the library's internals
    std::fprintf(stderr, "error: out of memory\n");
  } catch (const std::length_error&) {
    std::fprintf(stderr, "error: a size is too large for this device's memory\n");
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
        throw std::invalid_argument("unknown option " + mait::printable(arg));
      }
    }
  }
  bool has(const std::string& name) const {
    return std::any_of(flags.begin(), flags.end(), [&](const auto& flag) { return flag.first == name; });
  }
  // An integer flag from `minimum` to `maximum`: parsed whole (no trailing text), never wrapped around.
  long long integer(const std::string& name, long long fallback, long long minimum, long long maximum) const {
    for (const auto& [key, value] : flags)
      if (key == name) {
        char* end = nullptr;
        errno = 0;
        const long long parsed = std::strtoll(value.c_str(), &end, 10);
        if (value.empty() || *end != '\0' || errno == ERANGE || parsed < minimum || parsed > maximum)
          throw std::invalid_argument(name + " needs an integer from " + std::to_string(minimum) + " to " +
                                      std::to_string(maximum) + ", got '" + mait::printable(value) + "'");
        return parsed;
      }
    return fallback;
  }
  std::string text(const std::string& name) const {
    for (const auto& [key, value] : flags)
      if (key == name) return value;
    return {};
  }
  // The runner options every app takes: --threads N and --trust KEY (else $MAIT_TRUSTED_KEY).
  mait::RunnerOptions runner_options() const {
    mait::RunnerOptions options;
    options.threads = static_cast<int>(integer("--threads", 0, 1, mait::kMaxThreads));
    options.trusted_key = text("--trust");
    return options;
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
      if (inside.empty()) throw mait::Error("no images (.png, .jpg, .jpeg, .bmp) in " + mait::printable(path.string()));
      std::sort(inside.begin(), inside.end());
      found.insert(found.end(), inside.begin(), inside.end());
    } else {
      found.push_back(path);
    }
  }
  return found;
}

}  // namespace app
