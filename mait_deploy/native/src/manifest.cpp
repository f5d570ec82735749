// The bundle contract on the native side: manifest.json parsed with nlohmann/json, validated against the JSON
// Schema the Python side generates (valijson), then the rules across fields that a schema cannot state
// (the same as Manifest._check in mait_deploy/device/manifest.py).
#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <fstream>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validation_results.hpp>
#include <valijson/validator.hpp>

#include "internal.hpp"

namespace mait {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr std::uintmax_t kMaxManifestBytes = 1 << 20;  // a manifest is kilobytes; the Python reader's bound too
constexpr int kMaxDepth = 32;
constexpr int kNewestSchema = 3;

json parse_json(const std::string& text, const std::string& origin) {
  // The parser is iterative; the depth bound keeps validation and our own walk shallow.
  const json::parser_callback_t depth_check = [&](int depth, json::parse_event_t, json&) {
    if (depth > kMaxDepth)
      throw Error(origin + " is nested deeper than " + std::to_string(kMaxDepth) + " levels");
    return true;
  };
  try {
    return json::parse(text, depth_check);
  } catch (const json::exception& error) {
    throw Error(origin + " is not valid JSON (" + one_line(error.what(), 200) + ")");
  }
}

const valijson::Schema& contract() {
  static const std::unique_ptr<valijson::Schema> schema = [] {
    auto parsed = std::make_unique<valijson::Schema>();
    const json document = json::parse(contract_schema());
    valijson::SchemaParser parser(valijson::SchemaParser::kDraft7);  // the schema keeps to draft-7 keywords
    valijson::adapters::NlohmannJsonAdapter adapter(document);
    parser.populateSchema(adapter, *parsed);
    return parsed;
  }();
  return *schema;
}

void validate(const json& document, const std::string& origin) {
  valijson::Validator validator;
  valijson::ValidationResults results;
  valijson::adapters::NlohmannJsonAdapter target(document);
  if (validator.validate(contract(), target, &results)) return;
  // valijson records the innermost failure first (the field and the rule), then each enclosing one.
  valijson::ValidationResults::Error last;
  results.popError(last);
  std::string where;  // valijson's context is ["<root>", "[golden]", "[count]"]: golden.count, as the Python side says
  for (const auto& part : last.context) {
    std::string name;
    for (char c : part)
      if (c != '[' && c != ']' && c != '"' && c != '\'') name += c;
    if (!name.empty() && name != "<root>") where += (where.empty() ? "" : ".") + name;
  }
  throw Error(origin + ": " + (where.empty() ? "(top level)" : where) + ": " +
              one_line(last.description, 200));
}

FileEntry file_entry(const json& entry) {
  return {entry.at("path").get<std::string>(), entry.at("sha256").get<std::string>(),
          entry.at("bytes").get<std::uint64_t>()};
}

void check_relative(const std::string& path, const std::string& origin) {
  const fs::path relative(path);
  bool escapes = path.empty() || relative.is_absolute();
  for (const auto& part : relative)
    if (part == "..") escapes = true;
  if (escapes) throw Error(origin + ": file path '" + path + "' escapes the bundle folder");
}

const std::string& golden_dtype(const std::string& name) {
  static const std::string uint8 = "uint8", float32 = "float32";
  return name == "images" ? uint8 : float32;
}

void check_golden_layout(const GoldenEntry& golden, int num_classes, const std::string& origin) {
  std::vector<std::string> names, wanted = {golden.kind, "logits", "reference_logits"};
  for (const auto& array : golden.arrays) names.push_back(array.name);
  std::sort(names.begin(), names.end());
  std::sort(wanted.begin(), wanted.end());
  if (names != wanted)
    throw Error(origin + ": golden.arrays must be " + golden.kind + ", logits and reference_logits");
  std::uint64_t offset = 0;
  for (const auto& array : golden.arrays) {
    if (array.dtype != golden_dtype(array.name))
      throw Error(origin + ": golden array " + array.name + " must be " + golden_dtype(array.name));
    if (array.shape.front() != golden.count)
      throw Error(origin + ": golden array " + array.name + " has " + std::to_string(array.shape.front()) +
                  " rows; golden.count is " + std::to_string(golden.count));
    if (array.name != golden.kind &&
        array.shape != std::vector<std::int64_t>{golden.count, static_cast<std::int64_t>(num_classes)})
      throw Error(origin + ": golden array " + array.name + " must have shape [" + std::to_string(golden.count) +
                  ", " + std::to_string(num_classes) + "]");
    if (array.offset != offset)
      throw Error(origin + ": golden array " + array.name + " starts at " + std::to_string(array.offset) +
                  "; the arrays are packed back to back, so it must start at " + std::to_string(offset));
    offset += array.nbytes();
  }
}

PreprocessConfig preprocess_from(const json& pre, const std::string& origin) {
  PreprocessConfig config;
  config.input_size = pre.at("input_size").get<int>();
  config.channels = pre.at("channels").get<int>();
  config.mean = pre.at("mean").get<std::vector<float>>();
  config.std = pre.at("std").get<std::vector<float>>();
  config.interpolation = pre.value("interpolation", std::string("bicubic"));
  config.crop_pct = pre.value("crop_pct", 1.0);
  if (config.input_size < 1 || config.input_size > 2048 || (config.channels != 1 && config.channels != 3))
    throw Error(origin + ": model.preprocess needs input_size 1-2048 and channels 1 or 3");
  if (config.interpolation != "nearest" && config.interpolation != "bilinear" && config.interpolation != "bicubic")
    throw Error(origin + ": model.preprocess.interpolation must be nearest, bilinear or bicubic");
  if (!(config.crop_pct >= 0.05 && config.crop_pct <= 1))  // MIN_CROP_PCT, as the schema says
    throw Error(origin + ": model.preprocess.crop_pct must be from 0.05 to 1");
  for (auto* values : {&config.mean, &config.std}) {
    if (values->size() == 1) values->resize(static_cast<std::size_t>(config.channels), values->front());
    if (static_cast<int>(values->size()) != config.channels)
      throw Error(origin + ": model.preprocess mean and std need 1 or " + std::to_string(config.channels) +
                  " values");
  }
  for (float value : config.std)
    if (!(value > 0)) throw Error(origin + ": model.preprocess.std must be positive");
  return config;
}

Manifest from_json(const json& data, const std::string& origin) {
  Manifest manifest;
  manifest.schema_version = data.at("schema_version").get<int>();
  manifest.target = data.at("target").get<std::string>();
  manifest.precision = data.at("precision").get<std::string>();
  const json& runtime = data.at("runtime");
  manifest.runtime = runtime.at("name").get<std::string>();
  manifest.runtime_options_json = runtime.value("options", json::object()).dump();
  manifest.artifact = file_entry(data.at("artifact"));
  if (data.contains("files") && data.at("files").is_array())
    for (const auto& entry : data.at("files")) manifest.files.push_back(file_entry(entry));

  const json& input = data.at("inputs").at(0);
  manifest.input_name = input.at("name").get<std::string>();
  const json& model = data.at("model");
  manifest.num_classes = model.at("num_classes").get<int>();
  const int in_chans = model.at("in_chans").get<int>();
  const int img_size = model.at("img_size").get<int>();
  std::vector<std::int64_t> shape;
  for (const auto& dim : input.at("shape")) shape.push_back(dim.is_string() ? -1 : dim.get<std::int64_t>());
  const std::vector<std::int64_t> expected = {in_chans, img_size, img_size};
  if (shape.size() != 4 || std::vector<std::int64_t>(shape.begin() + 1, shape.end()) != expected)
    throw Error(origin + ": inputs[0].shape does not match the model's input [batch, " +
                std::to_string(in_chans) + ", " + std::to_string(img_size) + ", " + std::to_string(img_size) + "]");
  manifest.sample_shape = expected;
  const json& output_shape = data.at("outputs").at(0).at("shape");
  const json& width = output_shape.back();
  if (!width.is_number_integer() || width.get<std::int64_t>() != manifest.num_classes)
    throw Error(origin + ": outputs[0] has " + width.dump() + " classes, model.num_classes is " +
                std::to_string(manifest.num_classes));
  const json& batch = data.at("batch");
  if (batch.is_number_integer()) manifest.fixed_batch = batch.get<std::int64_t>();

  if (model.contains("labels") && model.at("labels").is_array()) {
    for (const auto& label : model.at("labels")) manifest.labels.push_back(label.get<std::string>());
    if (static_cast<int>(manifest.labels.size()) != manifest.num_classes)
      throw Error(origin + ": model has " + std::to_string(manifest.labels.size()) + " labels for " +
                  std::to_string(manifest.num_classes) + " classes");
  } else {
    for (int i = 0; i < manifest.num_classes; ++i) manifest.labels.push_back(std::to_string(i));
  }

  PreprocessConfig& config = manifest.preprocess;
  config = preprocess_from(model.at("preprocess"), origin);
  if (config.channels != in_chans || config.input_size != img_size)
    throw Error(origin + ": model.preprocess gives " + std::to_string(config.channels) + " x " +
                std::to_string(config.input_size) + " px; the model takes " + std::to_string(in_chans) + " x " +
                std::to_string(img_size));

  const json& golden = data.at("golden");
  GoldenEntry& entry = manifest.golden;
  entry.file = {golden.at("file").get<std::string>(), golden.at("sha256").get<std::string>(), 0};
  entry.count = golden.at("count").get<std::int64_t>();
  entry.kind = golden.value("kind", json()).is_string() ? golden.at("kind").get<std::string>() : "";
  entry.max_abs_diff = golden.at("tolerance").at("max_abs_diff").get<double>();
  entry.min_top1_agreement = golden.at("tolerance").at("min_top1_agreement").get<double>();
  const bool has_arrays = golden.contains("arrays") && golden.at("arrays").is_array();
  if (has_arrays != (manifest.schema_version >= 3))
    throw Error(origin + ": golden.arrays lays out schema 3's uncompressed golden file; schema " +
                std::to_string(manifest.schema_version) + (has_arrays ? " has none" : " needs it"));
  if (has_arrays) {
    if (entry.kind.empty()) throw Error(origin + ": golden.arrays needs golden.kind");
    for (const auto& array : golden.at("arrays"))
      entry.arrays.push_back({array.at("name").get<std::string>(), array.at("dtype").get<std::string>(),
                              array.at("shape").get<std::vector<std::int64_t>>(),
                              array.at("offset").get<std::uint64_t>()});
    check_golden_layout(entry, manifest.num_classes, origin);
  }
  for (const auto& path : {manifest.artifact.path, entry.file.path}) check_relative(path, origin);
  for (const auto& file : manifest.files) check_relative(file.path, origin);
  return manifest;
}

}  // namespace

std::string read_text(const fs::path& path, std::uintmax_t limit, const std::string& what) {
  std::error_code error;
  const auto size = fs::file_size(path, error);
  if (error) throw Error(what + " " + path.string() + ": " + error.message());
  if (size > limit)
    throw Error(what + " " + path.string() + " is " + std::to_string(size) + " bytes; the limit is " +
                std::to_string(limit));
  std::ifstream stream(path, std::ios::binary);
  if (!stream) throw Error("cannot read " + what + " " + path.string());
  std::ostringstream text;
  text << stream.rdbuf();
  return text.str();
}

PreprocessConfig parse_preprocess(const std::string& json_text) {
  const json data = parse_json(json_text, "preprocess config");
  try {
    return preprocess_from(data, "preprocess config");
  } catch (const json::exception& error) {
    throw Error("preprocess config is malformed (" + one_line(error.what(), 200) + ")");
  }
}

std::uint64_t GoldenArray::nbytes() const {
  // The schema bounds each dimension to 65536 and the layout check runs before any read; the product of up to
  // four such dimensions still fits: 65536^4 = 2^64 does not, so stop at the first overflow.
  std::uint64_t size = dtype == "uint8" ? 1 : 4;
  for (std::int64_t dim : shape) {
    if (dim <= 0 || size > UINT64_MAX / static_cast<std::uint64_t>(dim)) return UINT64_MAX;
    size *= static_cast<std::uint64_t>(dim);
  }
  return size;
}

Manifest read_manifest(const fs::path& bundle) {
  if (!fs::exists(bundle)) throw Error("bundle not found: " + bundle.string());
  if (!fs::is_directory(bundle)) throw Error(bundle.string() + " is not a bundle folder");
  const fs::path path = bundle / "manifest.json";
  if (!fs::is_regular_file(path)) throw Error(bundle.string() + " has no manifest.json: not a bundle");
  const std::string origin = path.string();
  const json data = parse_json(read_text(path, kMaxManifestBytes, "manifest"), origin);
  if (!data.is_object()) throw Error(origin + " is not a JSON object");
  const auto version = data.find("schema_version");
  if (version == data.end() || !version->is_number_integer())
    throw Error(origin + " has no valid schema_version");
  if (version->get<std::int64_t>() > kNewestSchema)
    throw Error(origin + " uses schema version " + version->dump() + "; this runner reads up to " +
                std::to_string(kNewestSchema) + ": regenerate the app with a newer mait-deploy");
  validate(data, origin);
  try {
    return from_json(data, origin);
  } catch (const json::exception& error) {  // the schema admits it, our reading does not: still one line
    throw Error(origin + " is malformed (" + one_line(error.what(), 200) + ")");
  }
}

std::string one_line(const std::string& text, std::size_t limit) {
  std::string line;
  bool space = false;
  for (char c : text) {
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      space = !line.empty();
      continue;
    }
    if (space) line += ' ';
    space = false;
    line += c;
  }
  if (line.size() > limit) line = line.substr(0, limit - 3) + "...";
  return line;
}

std::string printable(const std::string& text) {
  std::string out;
  const auto escape = [&out](unsigned char byte) {
    char code[5];
    std::snprintf(code, sizeof code, "\\x%02x", byte);
    out += code;
  };
  for (std::size_t i = 0; i < text.size();) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte < 0x20 || byte == 0x7f || byte == '\\') {
      escape(byte);
      ++i;
      continue;
    }
    // The length of a well-formed UTF-8 sequence starting here (0: not one): overlong forms, surrogates and
    // code points past U+10FFFF are not UTF-8.
    std::size_t length = byte < 0x80 ? 1 : (byte >= 0xc2 && byte <= 0xdf) ? 2 : (byte >= 0xe0 && byte <= 0xef) ? 3
                         : (byte >= 0xf0 && byte <= 0xf4) ? 4 : 0;
    if (length > 1) {
      if (i + length > text.size()) length = 0;
      for (std::size_t k = 1; length && k < length; ++k)
        if ((static_cast<unsigned char>(text[i + k]) & 0xc0) != 0x80) length = 0;
      if (length) {
        const auto second = static_cast<unsigned char>(text[i + 1]);
        if ((byte == 0xe0 && second < 0xa0) || (byte == 0xed && second > 0x9f) || (byte == 0xf0 && second < 0x90) ||
            (byte == 0xf4 && second > 0x8f))
          length = 0;
      }
    }
    if (length == 0) {
      escape(byte);
      ++i;
      continue;
    }
    out.append(text, i, length);
    i += length;
  }
  return out;
}

}  // namespace mait
