/* The status and message of a failed CUDA runtime call, shared by the CUDA entry points. */
#ifndef PADEC_CUDA_STATUS_H
#define PADEC_CUDA_STATUS_H

#include <cuda_runtime.h>

#include "../internal.h"

/* CUDA_ERROR naming `what` and the error; UNSUPPORTED_DEVICE where the error says the current
 * device cannot run the library's code at all (no kernel image for its architecture: padec is
 * built for sm_90a with sm_90 PTX, so anything before Hopper; or a driver too old for the PTX),
 * with the device's compute capability in the message, so call it while the failing device is
 * current. The runtime keeps the last error a call returned for cudaGetLastError; the status
 * reports it, so it is taken off the thread here, or the caller's next padec call would refuse
 * to launch for the same fault (padec__cuda_check_no_pending_error). A sticky error (the
 * context is lost) stays whatever is done, and every later call reports it. */
static inline padec_status padec__cuda_fail(cudaError_t error, const char *what) {
  (void)cudaGetLastError();
  if (error == cudaErrorNoKernelImageForDevice || error == cudaErrorUnsupportedPtxVersion) {
    int device = -1, major = 0, minor = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess)
      (void)cudaGetLastError();
    return padec__fail(PADEC_STATUS_UNSUPPORTED_DEVICE,
                       "%s: %s (%s): device %d, compute capability %d.%d; padec's kernels need "
                       "sm_90 (Hopper) or a later device that runs its sm_90 PTX, and a driver for "
                       "the CUDA it was built with",
                       what, cudaGetErrorName(error), cudaGetErrorString(error), device, major, minor);
  }
  return padec__fail(PADEC_STATUS_CUDA_ERROR, "%s: %s (%s)", what, cudaGetErrorName(error),
                     cudaGetErrorString(error));
}

#endif /* PADEC_CUDA_STATUS_H */
