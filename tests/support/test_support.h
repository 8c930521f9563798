/* Helpers shared by the test programs (header only). */
#ifndef PADEC_TEST_SUPPORT_H
#define PADEC_TEST_SUPPORT_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "padec.h"

/* CHECK(cond, format, ...): a failed condition is reported with its place and a message and
 * counted in test_failures; the test goes on and returns non-zero at the end if any failed. */
static int test_failures __attribute__((unused));
#define CHECK(cond, ...)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);          \
      fprintf(stderr, __VA_ARGS__);                                                      \
      fprintf(stderr, "\n");                                                             \
      test_failures += 1;                                                                \
    }                                                                                    \
  } while (0)

/* Params of this shape, every other field zero: the defaults (bf16 q, KV and output, NHD,
 * q_len 1, no window, the default softmax scale). */
static inline padec_params test_params(int32_t num_q_heads, int32_t num_kv_heads, int32_t head_dim,
                                       int32_t page_size) {
  padec_params p;
  memset(&p, 0, sizeof p);
  p.num_q_heads = num_q_heads;
  p.num_kv_heads = num_kv_heads;
  p.head_dim = head_dim;
  p.page_size = page_size;
  return p;
}

/* Host memory for at least `bytes`, 64-byte aligned (plans need 16, workspaces 16, pools 16),
 * rounded up to 64 bytes plus 64 spare, uninitialised; running out of memory ends the test. */
static inline void *test_alloc(size_t bytes) {
  void *p = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  if (!p) {
    fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
    exit(1);
  }
  return p;
}

/* splitmix64: the tests' random stream; *state advances by one step a call. */
static inline uint64_t test_splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* CUDA tests (include cuda_runtime_api.h first): a failed runtime call ends the test with its name,
 * place and error. */
#ifdef __CUDA_RUNTIME_API_H__
#include <stdio.h>
#include <stdlib.h>
#define CUDA_OK(call)                                                                    \
  do {                                                                                   \
    cudaError_t error_ = (call);                                                         \
    if (error_ != cudaSuccess) {                                                         \
      fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call,               \
              cudaGetErrorString(error_));                                               \
      exit(1);                                                                           \
    }                                                                                    \
  } while (0)
#endif

#endif /* PADEC_TEST_SUPPORT_H */
