// Decoding (libjpeg-turbo for JPEG, as Pillow does; stb_image, Debian's libstb, for PNG and BMP) and preprocessing, computed as mait_deploy/device/preprocess.py computes
// it with Pillow, so that the same file gives the same tensor on both sides (tests/native checks it on real and
// odd images): Pillow's mode conversions (ITU-R 601-2 luma in 16-bit fixed point, alpha composited over white in
// its 7-bit fixed point) and its resampling (a separable convolution whose weights are rounded to 22-bit fixed
// point, horizontal pass first, each pass rounded to 8 bits; nearest by 0.5-centred sampling).
// This file is compiled with -ffp-contract=off: a fused multiply-add would round the weights differently.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <memory>

#include <csetjmp>

#include <jpeglib.h>
#include <stb_image.h>

#include "internal.hpp"

namespace mait {
namespace fs = std::filesystem;
namespace {

struct StbFree {
  void operator()(void* pixels) const { stbi_image_free(pixels); }
};

struct FileClose {  // a deleter type, not decltype(&fclose): GCC 14 warns on fclose's attributes in a template
  void operator()(FILE* file) const { std::fclose(file); }
};

std::uint8_t clamp8(float value) {  // numpy's np.clip(x, 0, 255).astype(np.uint8): clip, then truncate
  return static_cast<std::uint8_t>(std::min(255.0f, std::max(0.0f, value)));
}

// 16-bit greys (Pillow's "I;16"): rescaled by the type's range, as preprocess._to_mode does in float32.
Image from_grey16(const std::uint16_t* values, int width, int height) {
  Image image{width, height, 1, std::vector<std::uint8_t>(static_cast<std::size_t>(width) * height)};
  for (std::size_t i = 0; i < image.pixels.size(); ++i) {
    float scaled = static_cast<float>(values[i]) / 65535.0f;
    scaled = scaled * 255.0f;
    scaled = scaled + 0.5f;
    image.pixels[i] = clamp8(scaled);
  }
  return image;
}

std::uint8_t luma(const std::uint8_t* rgb) {  // Pillow's L = R*299/1000 + G*587/1000 + B*114/1000, 16-bit fixed
  return static_cast<std::uint8_t>((rgb[0] * 19595u + rgb[1] * 38470u + rgb[2] * 7471u + 0x8000u) >> 16);
}

// Straight-alpha `src` over opaque white, in Pillow's alpha_composite arithmetic (7 extra bits, rounded /255).
void over_white(const std::uint8_t* src, std::uint8_t* out) {
  const std::uint32_t alpha = src[3];
  if (alpha == 0) {
    out[0] = out[1] = out[2] = 255;
    return;
  }
  constexpr std::uint32_t kBits = 7;
  const auto divide_255 = [](std::uint32_t value) { return ((value >> 8) + value) >> 8; };
  const std::uint32_t total = alpha * 255 + 255 * (255 - alpha);
  const std::uint32_t weight_src = alpha * 255 * 255 * (1u << kBits) / total;
  const std::uint32_t weight_white = 255 * (1u << kBits) - weight_src;
  for (int c = 0; c < 3; ++c)
    out[c] = static_cast<std::uint8_t>(
        divide_255(src[c] * weight_src + 255 * weight_white + (0x80u << kBits)) >> kBits);
}

// The image as the model's mode: 1 channel ("L") or 3 ("RGB").
Image to_mode(const Image& image, int channels) {
  const std::size_t count = static_cast<std::size_t>(image.width) * image.height;
  Image out{image.width, image.height, channels, std::vector<std::uint8_t>(count * channels)};
  const std::uint8_t* in = image.pixels.data();
  const int stride = image.channels;
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint8_t* pixel = in + i * stride;
    std::uint8_t* dst = out.pixels.data() + i * channels;
    if (channels == 1) {
      dst[0] = stride <= 2 ? pixel[0] : luma(pixel);  // LA -> L and RGBA -> L drop the alpha, as Pillow does
    } else if (stride == 1) {
      dst[0] = dst[1] = dst[2] = pixel[0];
    } else if (stride == 3) {
      dst[0] = pixel[0], dst[1] = pixel[1], dst[2] = pixel[2];
    } else {  // LA or RGBA: over white
      const std::uint8_t rgba[4] = {pixel[0], stride == 2 ? pixel[0] : pixel[1], stride == 2 ? pixel[0] : pixel[2],
                                    pixel[stride - 1]};
      over_white(rgba, dst);
    }
  }
  return out;
}

double bilinear(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

double bicubic(double x) {  // Keys' cubic convolution, a = -0.5
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

constexpr int kWeightBits = 22;  // 32 bits - 8 for the pixel - 2 for overshoot

struct Taps {  // for each output pixel: the first input pixel, how many, and their fixed-point weights
  int size = 0;
  std::vector<int> first, count;
  std::vector<std::int32_t> weights;  // size per output pixel
};

Taps taps(int in_size, int out_size, double (*filter)(double), double support) {
  const double scale = static_cast<double>(static_cast<float>(in_size)) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  support *= filter_scale;
  Taps result;
  result.size = static_cast<int>(std::ceil(support)) * 2 + 1;
  result.first.resize(out_size);
  result.count.resize(out_size);
  result.weights.assign(static_cast<std::size_t>(out_size) * result.size, 0);
  std::vector<double> weights(result.size);
  const double inverse_scale = 1.0 / filter_scale;  // multiplied, not divided: the weights must round alike
  for (int i = 0; i < out_size; ++i) {
    const double center = (i + 0.5) * scale;
    const int low = std::max(0, static_cast<int>(center - support + 0.5));
    const int high = std::min(in_size, static_cast<int>(center + support + 0.5)) - low;
    double total = 0.0;
    for (int k = 0; k < high; ++k) {
      weights[k] = filter((k + low - center + 0.5) * inverse_scale);
      total += weights[k];
    }
    for (int k = 0; k < high; ++k) {
      const double weight = total != 0.0 ? weights[k] / total : weights[k];
      const double fixed = weight * (1 << kWeightBits);
      result.weights[static_cast<std::size_t>(i) * result.size + k] =
          static_cast<std::int32_t>(weight < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
    result.first[i] = low;
    result.count[i] = high;
  }
  return result;
}

std::uint8_t round_fixed(std::int32_t sum) {
  const std::int32_t value = sum >> kWeightBits;  // arithmetic shift, then clamp
  return static_cast<std::uint8_t>(std::min(255, std::max(0, value)));
}

// One pass along x (horizontal) or y over rows [row0, row0 + rows) of `in`.
Image resample_pass(const Image& in, int out_width, int out_height, const Taps& t, bool horizontal, int row0) {
  const int channels = in.channels;
  Image out{out_width, out_height, channels,
            std::vector<std::uint8_t>(static_cast<std::size_t>(out_width) * out_height * channels)};
  for (int y = 0; y < out_height; ++y) {
    for (int x = 0; x < out_width; ++x) {
      const int i = horizontal ? x : y;
      const std::int32_t* w = &t.weights[static_cast<std::size_t>(i) * t.size];
      for (int c = 0; c < channels; ++c) {
        std::int32_t sum = 1 << (kWeightBits - 1);
        for (int k = 0; k < t.count[i]; ++k) {
          const int sx = horizontal ? t.first[i] + k : x;
          const int sy = horizontal ? y + row0 : t.first[i] + k;
          sum += in.pixels[(static_cast<std::size_t>(sy) * in.width + sx) * channels + c] * w[k];
        }
        out.pixels[(static_cast<std::size_t>(y) * out_width + x) * channels + c] = round_fixed(sum);
      }
    }
  }
  return out;
}

Image resize_nearest(const Image& in, int width, int height) {
  Image out{width, height, in.channels,
            std::vector<std::uint8_t>(static_cast<std::size_t>(width) * height * in.channels)};
  const double step_x = static_cast<double>(static_cast<float>(in.width)) / width;
  const double step_y = static_cast<double>(static_cast<float>(in.height)) / height;
  std::vector<int> source_x(width);
  double position = step_x * 0.5;  // accumulated, as Pillow's affine scale does
  for (int x = 0; x < width; ++x, position += step_x)
    source_x[x] = std::min(in.width - 1, position < 0.0 ? 0 : static_cast<int>(position));
  position = step_y * 0.5;
  for (int y = 0; y < height; ++y, position += step_y) {
    const int sy = std::min(in.height - 1, position < 0.0 ? 0 : static_cast<int>(position));
    for (int x = 0; x < width; ++x)
      std::copy_n(&in.pixels[(static_cast<std::size_t>(sy) * in.width + source_x[x]) * in.channels], in.channels,
                  &out.pixels[(static_cast<std::size_t>(y) * width + x) * in.channels]);
  }
  return out;
}

Image resize(const Image& in, int width, int height, const std::string& interpolation) {
  if (interpolation == "nearest") return resize_nearest(in, width, height);
  double (*filter)(double) = interpolation == "bilinear" ? bilinear : bicubic;
  const double support = interpolation == "bilinear" ? 1.0 : 2.0;
  const Taps vertical = taps(in.height, height, filter, support);
  Image current = in;
  if (width != in.width) {  // horizontal first, over the rows the vertical pass will read
    const int first_row = vertical.first.front();
    const int last_row = vertical.first.back() + vertical.count.back();
    current = resample_pass(in, width, last_row - first_row, taps(in.width, width, filter, support), true,
                            first_row);
    Taps shifted = vertical;
    for (int& first : shifted.first) first -= first_row;
    return height != in.height ? resample_pass(current, width, height, shifted, false, 0) : current;
  }
  return height != in.height ? resample_pass(current, width, height, vertical, false, 0) : current;
}

// libjpeg reports errors by longjmp: only plain C objects live in decode_jpeg's frame; the image is the caller's.
struct JpegErrors {
  jpeg_error_mgr manager;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_fail(j_common_ptr info) {
  auto* errors = reinterpret_cast<JpegErrors*>(info->err);
  (*info->err->format_message)(info, errors->message);
  std::longjmp(errors->jump, 1);
}

// Decodes with libjpeg's defaults (the accurate integer IDCT, fancy upsampling): Pillow's settings, so the same
// pixels. Returns nullptr on success, else the reason.
const char* decode_jpeg(FILE* file, Image* image, char* reason, std::size_t reason_size) {
  jpeg_decompress_struct info;
  JpegErrors errors;
  info.err = jpeg_std_error(&errors.manager);
  errors.manager.error_exit = jpeg_fail;
  errors.message[0] = '\0';
  if (setjmp(errors.jump)) {
    std::snprintf(reason, reason_size, "%s", errors.message[0] ? errors.message : "corrupt JPEG");
    jpeg_destroy_decompress(&info);
    return reason;
  }
  jpeg_create_decompress(&info);
  jpeg_stdio_src(&info, file);
  jpeg_read_header(&info, TRUE);
  if (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK) {
    std::snprintf(reason, reason_size, "CMYK JPEGs are not read natively: save it as RGB");
    jpeg_destroy_decompress(&info);
    return reason;
  }
  if (static_cast<std::int64_t>(info.image_width) * info.image_height > kMaxImagePixels) {
    std::snprintf(reason, reason_size, "%ux%u is above the %lld MP limit: downscale it first", info.image_width,
                  info.image_height, static_cast<long long>(kMaxImagePixels / 1'000'000));
    jpeg_destroy_decompress(&info);
    return reason;
  }
  info.out_color_space = info.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&info);
  image->width = static_cast<int>(info.output_width);
  image->height = static_cast<int>(info.output_height);
  image->channels = info.output_components;
  image->pixels.resize(static_cast<std::size_t>(image->width) * image->height * image->channels);
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = image->pixels.data() +
                   static_cast<std::size_t>(info.output_scanline) * image->width * image->channels;
    jpeg_read_scanlines(&info, &row, 1);
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  return nullptr;
}

bool is_jpeg(FILE* file) {
  unsigned char magic[3] = {0, 0, 0};
  const std::size_t read = std::fread(magic, 1, sizeof magic, file);
  std::rewind(file);
  return read == 3 && magic[0] == 0xFF && magic[1] == 0xD8 && magic[2] == 0xFF;
}

}  // namespace

Image load_image(const fs::path& path) {
  std::error_code error;
  const auto status = fs::status(path, error);
  if (!fs::exists(status)) throw Error("image not found: " + printable(path.string()));
  // A FIFO or a device would block or never end: images are regular files.
  if (!fs::is_regular_file(status)) throw Error(printable(path.string()) + " is not a regular file");
  std::unique_ptr<FILE, FileClose> file(std::fopen(path.c_str(), "rb"));
  if (!file) throw Error("cannot open image " + printable(path.string()));
  if (is_jpeg(file.get())) {
    Image image;
    char reason[JMSG_LENGTH_MAX + 64];
    if (decode_jpeg(file.get(), &image, reason, sizeof reason))
      throw Error("cannot read image " + printable(path.string()) + ": " + reason);
    return image;
  }
  int width = 0, height = 0, channels = 0;
  if (!stbi_info_from_file(file.get(), &width, &height, &channels))
    throw Error("cannot read image " + printable(path.string()) + ": " + stbi_failure_reason());
  if (static_cast<std::int64_t>(width) * height > kMaxImagePixels)
    throw Error("image " + printable(path.string()) + " is " + std::to_string(width) + "x" + std::to_string(height) +
                "; the limit is " + std::to_string(kMaxImagePixels / 1'000'000) + " MP: downscale it first");
  if (channels == 1 && stbi_is_16_bit_from_file(file.get())) {
    std::unique_ptr<std::uint16_t, StbFree> values(stbi_load_from_file_16(file.get(), &width, &height, &channels, 1));
    if (!values) throw Error("cannot read image " + printable(path.string()) + ": " + stbi_failure_reason());
    return from_grey16(values.get(), width, height);
  }
  std::unique_ptr<std::uint8_t, StbFree> pixels(stbi_load_from_file(file.get(), &width, &height, &channels, 0));
  if (!pixels) throw Error("cannot read image " + printable(path.string()) + ": " + stbi_failure_reason());
  Image image{width, height, channels, {}};
  image.pixels.assign(pixels.get(), pixels.get() + static_cast<std::size_t>(width) * height * channels);
  return image;
}

Image resize_crop(const Image& image, const PreprocessConfig& config) {
  if (image.width <= 0 || image.height <= 0 || image.channels < 1 || image.channels > 4 ||
      image.pixels.size() != static_cast<std::size_t>(image.width) * image.height * image.channels)
    throw Error("an image must be width x height x 1-4 channels of 8-bit pixels");
  Image current = to_mode(image, config.channels);
  const int size = config.input_size;
  if (current.width == size && current.height == size) return current;
  // Python's round() rounds half to even, as nearbyint does in the default rounding mode.
  const double scale_to = std::nearbyint(size / config.crop_pct);
  double long_side = current.width <= current.height
                         ? std::nearbyint(static_cast<double>(current.height) * scale_to / current.width)
                         : std::nearbyint(static_cast<double>(current.width) * scale_to / current.height);
  long_side = std::max(long_side, scale_to);
  // The resize before the centre crop holds scale_to x long_side pixels, and its horizontal pass the new width
  // times the source's rows: both within the pixel budget, checked before anything is allocated.
  const double new_width = current.width <= current.height ? scale_to : long_side;
  const double largest = std::max(scale_to * long_side, new_width * current.height);
  if (largest > static_cast<double>(kMaxImagePixels))
  {
    char sizes[96];
    std::snprintf(sizes, sizeof sizes, "%.0fx%.0f", new_width,
                  current.width <= current.height ? long_side : scale_to);
    throw Error("a " + std::to_string(image.width) + "x" + std::to_string(image.height) + " image resizes to " +
                sizes + " before the centre crop, above the " + std::to_string(kMaxImagePixels / 1'000'000) +
                " MP budget: crop it to a less elongated shape first");
  }
  const int width = static_cast<int>(new_width);
  const int height = static_cast<int>(current.width <= current.height ? long_side : scale_to);
  if (width != current.width || height != current.height)
    current = resize(current, width, height, config.interpolation);
  const int left = (current.width - size) / 2, top = (current.height - size) / 2;
  Image cropped{size, size, current.channels,
                std::vector<std::uint8_t>(static_cast<std::size_t>(size) * size * current.channels)};
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x)
      for (int c = 0; c < current.channels; ++c) {
        const int sx = x + left, sy = y + top;  // Pillow's crop fills outside the image with 0
        cropped.pixels[(static_cast<std::size_t>(y) * size + x) * current.channels + c] =
            (sx < 0 || sy < 0 || sx >= current.width || sy >= current.height)
                ? 0
                : current.pixels[(static_cast<std::size_t>(sy) * current.width + sx) * current.channels + c];
      }
  return cropped;
}

std::vector<float> preprocess(const Image& image, const PreprocessConfig& config) {
  const Image cropped = resize_crop(image, config);
  const int size = config.input_size, channels = config.channels;
  std::vector<float> tensor(static_cast<std::size_t>(channels) * size * size);
  for (int c = 0; c < channels; ++c)
    for (int i = 0; i < size * size; ++i) {
      // As numpy: float32(pixel) / 255, then (x - mean) / std, each step rounded to float32.
      const float unit = static_cast<float>(cropped.pixels[static_cast<std::size_t>(i) * channels + c]) / 255.0f;
      tensor[static_cast<std::size_t>(c) * size * size + i] = (unit - config.mean[c]) / config.std[c];
    }
  return tensor;
}

}  // namespace mait
