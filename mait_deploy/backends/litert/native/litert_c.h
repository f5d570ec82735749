// The part of LiteRT's C API the native runner calls, declared here because the ai-edge-litert wheel ships
// libLiteRt.so (symbols at version VERS_1.0) without headers and no package index has them.
//
// Written from LiteRT's public litert/c headers (litert_common.h, litert_any.h, litert_environment_options.h,
// litert_environment.h, litert_model.h, litert_model_types.h, litert_layout.h, litert_options.h,
// litert_opaque_options.h, litert_compiled_model.h, litert_tensor_buffer.h, options/litert_cpu_options.cc) at the
// API of ai-edge-litert 2.3.0, the pinned wheel, whose model loaders take the environment first. What proves the
// declarations: find.cmake links a program taking every function below against the libLiteRt.so it found (a
// missing or renamed symbol is one CMake error), and the golden self-test runs the bundle through them (a changed
// signature or struct is a golden mismatch, never silently wrong logits).
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  kLiteRtStatusOk = 0,
  kLiteRtStatusErrorInvalidArgument = 1,
  kLiteRtStatusErrorMemoryAllocationFailure = 2,
  kLiteRtStatusErrorRuntimeFailure = 3,
  kLiteRtStatusErrorMissingInputTensor = 4,
  kLiteRtStatusErrorUnsupported = 5,
  kLiteRtStatusErrorNotFound = 6,
  kLiteRtStatusErrorFileIO = 500,
  kLiteRtStatusErrorInvalidFlatbuffer = 501,
  kLiteRtStatusErrorCompilation = 504,
} LiteRtStatus;

// Opaque handles.
typedef struct LiteRtEnvironmentT* LiteRtEnvironment;
typedef struct LiteRtModelT* LiteRtModel;
typedef struct LiteRtSignatureT* LiteRtSignature;
typedef struct LiteRtTensorT* LiteRtTensor;
typedef struct LiteRtOptionsT* LiteRtOptions;
typedef struct LiteRtOpaqueOptionsT* LiteRtOpaqueOptions;
typedef struct LiteRtCompiledModelT* LiteRtCompiledModel;
typedef struct LiteRtTensorBufferT* LiteRtTensorBuffer;

typedef size_t LiteRtParamIndex;
typedef int LiteRtHwAcceleratorSet;  // a bit field of the accelerators below
enum { kLiteRtHwAcceleratorCpu = 1 << 0 };

// Environment options: a tag and a tagged value.
typedef enum {
  kLiteRtAnyTypeNone = 0,
  kLiteRtAnyTypeBool = 1,
  kLiteRtAnyTypeInt = 2,
} LiteRtAnyType;
typedef struct {
  LiteRtAnyType type;
  union {
    int64_t int_value;
    const void* ptr_value;
  };
} LiteRtAny;
typedef enum {
  kLiteRtEnvOptionTagAutoRegisterAccelerators = 24,  // bit field of the accelerators to register
  kLiteRtEnvOptionTagMinLoggerSeverity = 25,
} LiteRtEnvOptionTag;
typedef struct {
  LiteRtEnvOptionTag tag;
  LiteRtAny value;
} LiteRtEnvOption;
enum { kLiteRtLogSeveritySilent = 4 };

// Tensor types: an element type and a layout of at most 8 dimensions.
typedef enum {
  kLiteRtElementTypeFloat32 = 1,
  kLiteRtElementTypeUInt8 = 3,
  kLiteRtElementTypeInt8 = 9,
} LiteRtElementType;
#define LITERT_TENSOR_MAX_RANK 8
typedef struct {
  unsigned int rank : 7;
  unsigned int has_strides : 1;
  int32_t dimensions[LITERT_TENSOR_MAX_RANK];
  uint32_t strides[LITERT_TENSOR_MAX_RANK];
} LiteRtLayout;
typedef struct {
  LiteRtElementType element_type;
  LiteRtLayout layout;
} LiteRtRankedTensorType;
typedef struct {
  float scale;
  int64_t zero_point;
} LiteRtQuantizationPerTensor;
typedef enum {
  kLiteRtQuantizationNone = 0,
  kLiteRtQuantizationPerTensor = 1,
} LiteRtQuantizationTypeId;

// Host memory handed to a tensor buffer must be aligned to this many bytes.
#define LITERT_HOST_MEMORY_BUFFER_ALIGNMENT 64
typedef void (*LiteRtHostMemoryDeallocator)(void* addr);

// The functions, once each in this list: find.cmake's link check takes the address of every one.
#define MAIT_LITERT_FUNCTIONS(X)                                                                                  \
  X(LiteRtCreateEnvironment) X(LiteRtDestroyEnvironment) X(LiteRtCreateModelFromFile) X(LiteRtDestroyModel)     \
  X(LiteRtGetNumModelSignatures) X(LiteRtGetModelSignature) X(LiteRtGetNumSignatureInputs)                       \
  X(LiteRtGetNumSignatureOutputs) X(LiteRtGetSignatureInputTensorByIndex) X(LiteRtGetSignatureOutputTensorByIndex) \
  X(LiteRtGetRankedTensorType) X(LiteRtGetQuantizationTypeId) X(LiteRtGetPerTensorQuantization)                   \
  X(LiteRtCreateOptions) X(LiteRtDestroyOptions) X(LiteRtSetOptionsHardwareAccelerators)                         \
  X(LiteRtCreateOpaqueOptions) X(LiteRtAddOpaqueOptions) X(LiteRtCreateCompiledModel) X(LiteRtDestroyCompiledModel) \
  X(LiteRtCreateTensorBufferFromHostMemory) X(LiteRtDestroyTensorBuffer) X(LiteRtRunCompiledModel)

LiteRtStatus LiteRtCreateEnvironment(int num_options, const LiteRtEnvOption* options, LiteRtEnvironment* environment);
void LiteRtDestroyEnvironment(LiteRtEnvironment environment);

LiteRtStatus LiteRtCreateModelFromFile(LiteRtEnvironment environment, const char* filename, LiteRtModel* model);
void LiteRtDestroyModel(LiteRtModel model);
LiteRtStatus LiteRtGetNumModelSignatures(LiteRtModel model, LiteRtParamIndex* num_signatures);
LiteRtStatus LiteRtGetModelSignature(LiteRtModel model, LiteRtParamIndex signature_index, LiteRtSignature* signature);
LiteRtStatus LiteRtGetNumSignatureInputs(LiteRtSignature signature, LiteRtParamIndex* num_inputs);
LiteRtStatus LiteRtGetNumSignatureOutputs(LiteRtSignature signature, LiteRtParamIndex* num_outputs);
LiteRtStatus LiteRtGetSignatureInputTensorByIndex(LiteRtSignature signature, LiteRtParamIndex input_index,
                                                  LiteRtTensor* tensor);
LiteRtStatus LiteRtGetSignatureOutputTensorByIndex(LiteRtSignature signature, LiteRtParamIndex output_index,
                                                   LiteRtTensor* tensor);
LiteRtStatus LiteRtGetRankedTensorType(LiteRtTensor tensor, LiteRtRankedTensorType* ranked_tensor_type);
LiteRtStatus LiteRtGetQuantizationTypeId(LiteRtTensor tensor, LiteRtQuantizationTypeId* q_type_id);
LiteRtStatus LiteRtGetPerTensorQuantization(LiteRtTensor tensor, LiteRtQuantizationPerTensor* quantization);

LiteRtStatus LiteRtCreateOptions(LiteRtOptions* options);
void LiteRtDestroyOptions(LiteRtOptions options);
LiteRtStatus LiteRtSetOptionsHardwareAccelerators(LiteRtOptions options, LiteRtHwAcceleratorSet accelerators);
// Payload ownership passes to the opaque options (its destructor frees it), theirs to the options they are added to.
LiteRtStatus LiteRtCreateOpaqueOptions(const char* payload_identifier, void* payload_data,
                                       void (*payload_destructor)(void* payload_data), LiteRtOpaqueOptions* options);
LiteRtStatus LiteRtAddOpaqueOptions(LiteRtOptions options, LiteRtOpaqueOptions opaque_options);

LiteRtStatus LiteRtCreateCompiledModel(LiteRtEnvironment environment, LiteRtModel model,
                                       LiteRtOptions compilation_options, LiteRtCompiledModel* compiled_model);
void LiteRtDestroyCompiledModel(LiteRtCompiledModel compiled_model);
LiteRtStatus LiteRtCreateTensorBufferFromHostMemory(const LiteRtRankedTensorType* tensor_type, void* host_buffer_addr,
                                                    size_t host_buffer_size, LiteRtHostMemoryDeallocator deallocator,
                                                    LiteRtTensorBuffer* buffer);
void LiteRtDestroyTensorBuffer(LiteRtTensorBuffer buffer);
LiteRtStatus LiteRtRunCompiledModel(LiteRtCompiledModel compiled_model, LiteRtParamIndex signature_index,
                                    size_t num_input_buffers, LiteRtTensorBuffer* input_buffers,
                                    size_t num_output_buffers, LiteRtTensorBuffer* output_buffers);

#ifdef __cplusplus
}  // extern "C"

static_assert(sizeof(LiteRtRankedTensorType) == 72, "LiteRtRankedTensorType is 72 bytes in LiteRT's ABI");
static_assert(offsetof(LiteRtRankedTensorType, layout) == 4, "LiteRtRankedTensorType.layout is at offset 4");
static_assert(sizeof(LiteRtQuantizationPerTensor) == 16, "LiteRtQuantizationPerTensor is 16 bytes");
static_assert(sizeof(LiteRtEnvOption) == 24, "LiteRtEnvOption is 24 bytes");
#endif
