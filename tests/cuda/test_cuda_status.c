/*
 * The status of a failed CUDA call (src/cuda/cuda_status.h): the two errors that say the device
 * cannot run padec's code at all (no kernel image for its architecture, a driver too old for the
 * PTX) become UNSUPPORTED_DEVICE with the device's compute capability and what padec needs in the
 * message; any other error stays CUDA_ERROR. Every Hopper GPU runs the kernels, so no launch
 * provokes the first two: the mapping is checked on the error codes themselves. Needs no GPU
 * (without one the device reads as -1, compute capability 0.0; with one, its own).
 */
#include <stdio.h>
#include <string.h>

#include "cuda/cuda_status.h"
#include "padec_cuda.h"

static int g_failures;
static int g_device_present;

static void expect(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "FAIL: %s (message: %s)\n", what, padec_last_message());
    g_failures += 1;
  }
}

static void expect_unsupported(cudaError_t error, const char *name) {
  const padec_status status = padec__cuda_fail(error, "decode kernel launch");
  char what[160];
  snprintf(what, sizeof what, "%s -> UNSUPPORTED_DEVICE", name);
  expect(status == PADEC_STATUS_UNSUPPORTED_DEVICE, what);
  const char *message = padec_last_message();
  snprintf(what, sizeof what, "%s: the message names the call, the error, the compute capability "
                              "and what padec needs", name);
  expect(strstr(message, "decode kernel launch") != NULL && strstr(message, name) != NULL &&
             strstr(message, "compute capability") != NULL && strstr(message, "sm_90") != NULL,
         what);
  if (g_device_present) {
    /* With a device its compute capability is read (device 0, 9.0 or later here), and the
     * query leaves no error pending for the caller's next CUDA call. Without a driver every
     * runtime call, cudaGetLastError too, keeps returning the same error, so neither holds. */
    snprintf(what, sizeof what, "%s: the message has the current device and its compute "
                                "capability, and no CUDA error is left pending", name);
    expect(strstr(message, "device -1") == NULL && strstr(message, "capability 0.0") == NULL &&
               cudaGetLastError() == cudaSuccess,
           what);
  }
}

int main(void) {
  int count = 0;
  g_device_present = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  (void)cudaGetLastError();
  expect_unsupported(cudaErrorNoKernelImageForDevice, "cudaErrorNoKernelImageForDevice");
  expect_unsupported(cudaErrorUnsupportedPtxVersion, "cudaErrorUnsupportedPtxVersion");
  const cudaError_t others[] = {cudaErrorLaunchFailure, cudaErrorInvalidValue,
                                cudaErrorMemoryAllocation, cudaErrorIllegalAddress};
  for (size_t i = 0; i < sizeof others / sizeof others[0]; ++i) {
    const padec_status status = padec__cuda_fail(others[i], "cudaMemsetAsync");
    char what[160];
    snprintf(what, sizeof what, "%s -> CUDA_ERROR naming it", cudaGetErrorName(others[i]));
    expect(status == PADEC_STATUS_CUDA_ERROR &&
               strstr(padec_last_message(), "cudaMemsetAsync") != NULL &&
               strstr(padec_last_message(), cudaGetErrorName(others[i])) != NULL,
           what);
  }
  if (g_device_present) {
    /* A call that fails without harming the context leaves its error for cudaGetLastError;
     * once padec has reported it, the caller's next padec call must not meet it again as a
     * pending error and refuse to launch. */
    void *huge = NULL;
    const cudaError_t error = cudaMalloc(&huge, (size_t)1 << 62);
    expect(error != cudaSuccess, "a 4 EiB cudaMalloc fails");
    (void)padec__cuda_fail(error, "cudaMalloc");
    expect(cudaGetLastError() == cudaSuccess, "the reported error is not left pending");
    /* The device query's peak memory bandwidth, which `auto` weighs per SM: every Hopper part
     * reports its memory clock and bus, between 1 and 100 TB/s. */
    padec_cuda_device_info info;
    expect(padec_cuda_device_query(0, &info) == PADEC_STATUS_OK && info.sm_count > 0 &&
               info.memory_bytes_per_second > 1000000000000LL &&
               info.memory_bytes_per_second < 100000000000000LL,
           "padec_cuda_device_query: memory_bytes_per_second between 1 and 100 TB/s");
    expect(cudaGetLastError() == cudaSuccess, "the device query leaves no error pending");
  }
  if (g_failures) return 1;
  printf("test_cuda_status: passed\n");
  return 0;
}
