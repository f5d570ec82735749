/* mait-deploy native runner, C ABI: what a non-C++ caller (the Python device side, through ctypes) links.
 * The library libmait_runner_c.so is the C++ runner (mait.hpp) of one runtime behind these functions.
 * Every function that can fail returns 0 on success and writes a one-line message into `error` otherwise.
 *
 * Threads: every function may be called from any thread. Calls on one handle are serialised (each returns its
 * own answer); open one handle per thread to run in parallel. Close a handle once, after its last call. */
#ifndef MAIT_MAIT_C_H
#define MAIT_MAIT_C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
/* Exported from the library; everything else in it is hidden. */
#pragma GCC visibility push(default)

typedef struct mait_runner mait_runner;

/* The ABI this library implements: a caller checks it before calling anything else (a library that does not
 * export it is not a mait-deploy runner). Bumped on any change to these declarations. */
#define MAIT_ABI_VERSION 2
int mait_abi_version(void);

/* The runtime this library was built for (its registry name, as the bundle's manifest names it). */
const char* mait_runtime(void);
/* Opens a bundle (manifest checked, files hashed when check_hashes, runtime loaded); threads 0: the runtime's,
 * else 1 to 256. A trusted key is a device setting ($MAIT_TRUSTED_KEY): then the bundle's signature is checked. */
int mait_runner_open(const char* bundle, int threads, int check_hashes, mait_runner** out, char* error,
                     size_t error_size);
/* Logits [count, classes] of inputs [count, C, H, W] (chunked or padded to the artifact's batch); runtime_ms: the
 * runtime's own calls, summed. `logits` holds `capacity` floats: at least count * classes, else an error. */
int mait_runner_run(mait_runner* runner, const float* inputs, int64_t count, float* logits, size_t capacity,
                    double* runtime_ms, char* error, size_t error_size);
/* The bundle's class count and its input sample's shape [C, H, W] (shape holds 3 values). */
int mait_runner_shape(const mait_runner* runner, int64_t* classes, int64_t* shape);
/* What runs: the runtime, its version and its settings (one line, truncated to size). */
void mait_runner_describe(const mait_runner* runner, char* text, size_t size);
void mait_runner_close(mait_runner* runner);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif

#endif /* MAIT_MAIT_C_H */
