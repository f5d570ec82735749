// Signed bundles: manifest.sig is a DSSE envelope (the envelope OpenSSF model-signing and in-toto use) whose
// payload is manifest.json's exact bytes, signed with Ed25519 over DSSE's pre-authentication encoding. The
// manifest holds every file's sha256, so a valid signature plus the hash check covers the whole bundle.
#include <memory>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "internal.hpp"

namespace mait {
namespace fs = std::filesystem;
namespace {

constexpr std::uintmax_t kMaxSignatureBytes = 4 << 20;  // the payload is the manifest (at most 1 MiB), base64'd
constexpr std::uintmax_t kMaxKeyBytes = 64 << 10;

// read_text with the user's path escaped, and only for a regular file (never a FIFO that would block).
std::string read_bounded(const fs::path& path, std::uintmax_t limit, const std::string& what) {
  std::error_code error;
  if (!fs::is_regular_file(path, error)) throw Error(what + " " + printable(path.string()) + " is not a file");
  return read_text(path, limit, what);
}

std::string base64_decode(const std::string& text, const std::string& what) {
  if (text.size() % 4 != 0 || text.size() > (std::size_t{8} << 20))
    throw Error("manifest.sig: " + what + " is not base64");
  std::string out(text.size() / 4 * 3, '\0');
  const int length = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                     reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (length < 0) throw Error("manifest.sig: " + what + " is not base64");
  std::size_t padding = 0;  // EVP_DecodeBlock counts the '=' padding as zero bytes
  for (auto it = text.rbegin(); it != text.rend() && *it == '=' && padding < 2; ++it) ++padding;
  out.resize(static_cast<std::size_t>(length) - padding);
  return out;
}

// DSSE's pre-authentication encoding: "DSSEv1 <len(type)> <type> <len(body)> <body>".
std::string pae(const std::string& type, const std::string& body) {
  return "DSSEv1 " + std::to_string(type.size()) + " " + type + " " + std::to_string(body.size()) + " " + body;
}

struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct ContextFree {
  void operator()(EVP_MD_CTX* context) const { EVP_MD_CTX_free(context); }
};

std::unique_ptr<EVP_PKEY, KeyFree> public_key(const fs::path& path) {
  const std::string pem = read_bounded(path, kMaxKeyBytes, "trusted key");
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::unique_ptr<EVP_PKEY, KeyFree> key(bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key || EVP_PKEY_id(key.get()) != EVP_PKEY_ED25519)
    throw Error("trusted key " + printable(path.string()) + " is not an Ed25519 public key in PEM");
  return key;
}

constexpr const char* kSignaturePayloadType = "application/vnd.mait-deploy.manifest+json";

}  // namespace

void verify_signature(const fs::path& bundle, const fs::path& key_path) {
  const auto key = public_key(key_path);
  const fs::path envelope_path = bundle / kSignatureFile;
  if (!fs::exists(envelope_path))
    throw Error(printable(bundle.string()) + " is not signed (no " + kSignatureFile + ") and a trusted key is set");
  std::string payload_type, payload_text;
  std::vector<std::string> signatures;
  try {
    const nlohmann::json::parser_callback_t shallow = [](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
      if (depth > 4) throw Error("manifest.sig is not a DSSE envelope (nested too deep)");
      return true;
    };
    const auto envelope =
        nlohmann::json::parse(read_bounded(envelope_path, kMaxSignatureBytes, "signature"), shallow);
    payload_type = envelope.at("payloadType").get<std::string>();
    payload_text = envelope.at("payload").get<std::string>();
    for (const auto& entry : envelope.at("signatures")) signatures.push_back(entry.at("sig").get<std::string>());
  } catch (const nlohmann::json::exception&) {
    throw Error(printable(bundle.string()) + ": manifest.sig is not a DSSE envelope");
  }
  if (payload_type != kSignaturePayloadType)
    throw Error(printable(bundle.string()) + ": manifest.sig signs a " + printable(payload_type) +
                ", not a mait-deploy manifest");
  const std::string payload = base64_decode(payload_text, "the payload");
  bool verified = false;
  for (const auto& encoded : signatures) {
    const std::string signature = base64_decode(encoded, "a signature");
    const std::string message = pae(kSignaturePayloadType, payload);
    std::unique_ptr<EVP_MD_CTX, ContextFree> context(EVP_MD_CTX_new());
    if (!context || EVP_DigestVerifyInit(context.get(), nullptr, nullptr, nullptr, key.get()) != 1)
      throw Error("OpenSSL cannot start an Ed25519 verification");
    if (EVP_DigestVerify(context.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                         reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1) {
      verified = true;
      break;
    }
  }
  if (!verified)
    throw Error(printable(bundle.string()) + ": manifest.sig is not a valid signature by the trusted key " +
                printable(key_path.filename().string()));
  // The signed bytes must be the manifest this runner reads, byte for byte.
  if (read_bounded(bundle / "manifest.json", kMaxSignatureBytes, "manifest") != payload)
    throw Error(printable(bundle.string()) + ": manifest.json differs from the manifest its signature covers");
}

}  // namespace mait
