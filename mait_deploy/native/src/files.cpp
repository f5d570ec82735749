// Every file a bundle lists, checked by size and sha256 (OpenSSL's EVP digest) before anything is loaded.
#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <memory>

#include <openssl/evp.h>

#include "internal.hpp"

namespace mait {
namespace fs = std::filesystem;

std::string sha256_file(const fs::path& path) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) throw Error("cannot read " + path.string());
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!context || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1)
    throw Error("OpenSSL cannot start a sha256 digest");
  std::vector<char> buffer(1 << 20);
  while (stream) {
    stream.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    if (stream.gcount() > 0 &&
        EVP_DigestUpdate(context.get(), buffer.data(), static_cast<std::size_t>(stream.gcount())) != 1)
      throw Error("OpenSSL sha256 failed on " + path.string());
  }
  if (stream.bad()) throw Error("cannot read " + path.string());
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(context.get(), digest.data(), &length) != 1)
    throw Error("OpenSSL sha256 failed on " + path.string());
  std::string hex;
  char byte[3];
  for (unsigned int i = 0; i < length; ++i) {
    std::snprintf(byte, sizeof byte, "%02x", digest[i]);
    hex += byte;
  }
  return hex;
}

void check_files(const fs::path& bundle, const Manifest& manifest) {
  struct Expected {
    FileEntry entry;
    bool has_size;  // the golden entry records no size: its layout gives it, checked when it is read
  };
  std::vector<Expected> expected{{manifest.artifact, true}};
  for (const auto& entry : manifest.files) expected.push_back({entry, true});
  expected.push_back({manifest.golden.file, false});
  std::error_code error;
  const fs::path root = fs::canonical(bundle, error);
  if (error) throw Error("cannot open bundle " + bundle.string() + " (" + error.message() + ")");
  for (const auto& [entry, has_size] : expected) {
    const fs::path path = bundle / entry.path;
    if (fs::is_symlink(fs::symlink_status(path, error)))
      throw Error(bundle.string() + ": " + entry.path + " is a symbolic link; bundles hold plain files");
    if (!fs::is_regular_file(path, error))
      throw Error(bundle.string() + ": " + entry.path + " is missing");
    // A link on a folder of the path leads elsewhere too.
    const fs::path resolved = fs::canonical(path, error);
    if (error || std::mismatch(root.begin(), root.end(), resolved.begin(), resolved.end()).first != root.end())
      throw Error(bundle.string() + ": " + entry.path + " leads outside the bundle folder (a symbolic link)");
    const auto size = fs::file_size(path, error);
    if (error) throw Error(bundle.string() + ": cannot read " + entry.path + " (" + error.message() + ")");
    // Sizes are checked before hashing: a truncated or swapped file is caught without reading gigabytes.
    if (has_size && size != entry.bytes)
      throw Error(bundle.string() + ": " + entry.path + " is " + std::to_string(size) + " bytes; the manifest says " +
                  std::to_string(entry.bytes) + " (changed or truncated since it was built)");
    if (sha256_file(path) != entry.sha256)
      throw Error(bundle.string() + ": " + entry.path + " does not match its sha256 in the manifest (changed "
                  "since it was built)");
  }
}

}  // namespace mait
