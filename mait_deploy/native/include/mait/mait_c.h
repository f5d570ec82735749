/* mait-deploy native runner, C ABI: what a non-C++ caller (the Python device side, through ctypes) links.
 * The library libmait_runner_c.so is the C++ runner (mait.hpp) of one runtime behind these five functions.
 * Every function that can fail returns 0 on success and writes a one-line message into `error` otherwise. */
#ifndef MAIT_MAIT_C_H
#define MAIT_MAIT_C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mait_runner mait_runner;

/* The runtime this library was built for ("onnxruntime", ...). */
const char* mait_runtime(void);
/* Opens a bundle (manifest checked, files hashed when check_hashes, runtime loaded); threads 0: the runtime's. */
int mait_runner_open(const char* bundle, int threads, int check_hashes, mait_runner** out, char* error,
                     size_t error_size);
/* Logits [count, classes] of inputs [count, C, H, W] (chunked or padded to the artifact's batch); runtime_ms: the
 * runtime's own calls, summed. `logits` holds count * classes floats. */
int mait_runner_run(mait_runner* runner, const float* inputs, int64_t count, float* logits, double* runtime_ms,
                    char* error, size_t error_size);
/* What runs: the runtime, its version and its settings (one line, truncated to size). */
void mait_runner_describe(const mait_runner* runner, char* text, size_t size);
void mait_runner_close(mait_runner* runner);

#ifdef __cplusplus
}
#endif

#endif /* MAIT_MAIT_C_H */
