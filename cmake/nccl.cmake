# NCCL, for the multi-GPU example (examples/context_parallel_nccl.c); the library never needs it.
#
# PADEC_NCCL: AUTO (default) builds the example when NCCL is found and says so when it is not;
# ON makes a missing NCCL an error (CI, where nvcc is present); OFF never looks.
# The first place holding both include/nccl.h and libnccl.so (or libnccl.so.2) wins:
#   1. PADEC_NCCL_ROOT (cache variable), then $NCCL_ROOT, then $NCCL_HOME;
#   2. the CUDA toolkit's include and library folders;
#   3. NVIDIA's Python wheel (pip install nvidia-nccl-cu13, or -cu12 for CUDA 12): the folder of
#      the nvidia.nccl package of python3, which holds include/ and lib/libnccl.so.2;
#   4. the system's default paths (Debian's libnccl-dev).
# Sets PADEC_HAVE_NCCL and, when ON, the imported target padec::nccl (its include folder is a
# system one, so warnings in nccl.h do not fail -Werror builds).
set(PADEC_NCCL "AUTO" CACHE STRING "Build the NCCL example: AUTO (if NCCL is found), ON or OFF")
set_property(CACHE PADEC_NCCL PROPERTY STRINGS AUTO ON OFF)
set(PADEC_NCCL_ROOT "" CACHE PATH "Where NCCL is installed (holds include/nccl.h and lib/libnccl.so)")

set(PADEC_HAVE_NCCL OFF)

# Looks for nccl.h in include_dirs and libnccl in lib_dirs (both lists); on success sets
# _padec_nccl_include, _padec_nccl_library and _padec_nccl_from in the caller.
function(_padec_nccl_try from include_dirs lib_dirs)
  foreach(include_dir IN LISTS include_dirs)
    if(NOT EXISTS "${include_dir}/nccl.h")
      continue()
    endif()
    foreach(lib_dir IN LISTS lib_dirs)
      foreach(name libnccl.so libnccl.so.2)
        if(EXISTS "${lib_dir}/${name}")
          set(_padec_nccl_include "${include_dir}" PARENT_SCOPE)
          set(_padec_nccl_library "${lib_dir}/${name}" PARENT_SCOPE)
          set(_padec_nccl_from "${from}" PARENT_SCOPE)
          return()
        endif()
      endforeach()
    endforeach()
  endforeach()
endfunction()

if(NOT PADEC_NCCL STREQUAL "OFF")
  if(NOT PADEC_HAVE_CUDA)
    if(PADEC_NCCL STREQUAL "ON")
      message(FATAL_ERROR "PADEC_NCCL=ON, but the CUDA build is off (no nvcc found, or PADEC_CUDA=OFF)")
    endif()
  else()
    set(_padec_nccl_include "")
    set(_padec_nccl_library "")
    foreach(root IN ITEMS "${PADEC_NCCL_ROOT}" "$ENV{NCCL_ROOT}" "$ENV{NCCL_HOME}")
      if(root AND NOT _padec_nccl_library)
        _padec_nccl_try("${root}" "${root}/include"
                        "${root}/lib;${root}/lib64;${root}/lib/${CMAKE_LIBRARY_ARCHITECTURE}")
      endif()
    endforeach()
    if(NOT _padec_nccl_library)
      set(_padec_cuda_root "${CUDAToolkit_LIBRARY_ROOT}")
      _padec_nccl_try("the CUDA toolkit" "${CUDAToolkit_INCLUDE_DIRS};${_padec_cuda_root}/include"
                      "${CUDAToolkit_LIBRARY_DIR};${_padec_cuda_root}/lib64;${_padec_cuda_root}/lib")
    endif()
    if(NOT _padec_nccl_library)
      find_program(PADEC_PYTHON3 NAMES python3)
      if(PADEC_PYTHON3)
        # The wheel's nvidia.nccl has no __init__.py, so its __file__ is None: its folder is
        # __path__[0] (a regular package's __path__ is its folder too).
        execute_process(
          COMMAND "${PADEC_PYTHON3}" -c "import nvidia.nccl; print(list(nvidia.nccl.__path__)[0])"
          OUTPUT_VARIABLE _padec_nccl_wheel
          OUTPUT_STRIP_TRAILING_WHITESPACE
          ERROR_QUIET
          RESULT_VARIABLE _padec_nccl_wheel_result)
        if(_padec_nccl_wheel_result EQUAL 0 AND _padec_nccl_wheel)
          _padec_nccl_try("the Python wheel of ${PADEC_PYTHON3}" "${_padec_nccl_wheel}/include"
                          "${_padec_nccl_wheel}/lib")
        endif()
      endif()
    endif()
    if(NOT _padec_nccl_library)
      find_path(PADEC_NCCL_SYSTEM_INCLUDE_DIR nccl.h)
      find_library(PADEC_NCCL_SYSTEM_LIBRARY NAMES nccl libnccl.so.2)
      if(PADEC_NCCL_SYSTEM_INCLUDE_DIR AND PADEC_NCCL_SYSTEM_LIBRARY)
        set(_padec_nccl_include "${PADEC_NCCL_SYSTEM_INCLUDE_DIR}")
        set(_padec_nccl_library "${PADEC_NCCL_SYSTEM_LIBRARY}")
        set(_padec_nccl_from "the system's paths")
      endif()
    endif()

    # The example needs ncclCommFinalize and ncclGetLastError: NCCL 2.14 or newer.
    set(_padec_nccl_problem "")
    if(_padec_nccl_library)
      file(STRINGS "${_padec_nccl_include}/nccl.h" _padec_nccl_version_lines
           REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) +[0-9]+")
      set(_padec_nccl_version "")
      foreach(part MAJOR MINOR PATCH)
        string(REGEX MATCH "NCCL_${part} +([0-9]+)" _padec_match "${_padec_nccl_version_lines}")
        list(APPEND _padec_nccl_version "${CMAKE_MATCH_1}")
      endforeach()
      list(JOIN _padec_nccl_version "." _padec_nccl_version)
      if(_padec_nccl_version VERSION_LESS 2.14)
        set(_padec_nccl_problem
            "NCCL ${_padec_nccl_version} at ${_padec_nccl_include} is older than 2.14")
      endif()
    else()
      set(_padec_nccl_problem
          "NCCL not found (set PADEC_NCCL_ROOT or NCCL_ROOT, or pip install nvidia-nccl-cu<CUDA major>)")
    endif()

    if(_padec_nccl_problem)
      if(PADEC_NCCL STREQUAL "ON")
        message(FATAL_ERROR "PADEC_NCCL=ON: ${_padec_nccl_problem}")
      endif()
      message(STATUS "padec: ${_padec_nccl_problem}: example_context_parallel_nccl skipped")
    else()
      set(PADEC_HAVE_NCCL ON)
      message(STATUS "padec: NCCL ${_padec_nccl_version} from ${_padec_nccl_from}: "
                     "${_padec_nccl_include}, ${_padec_nccl_library}")
      if(NOT TARGET padec::nccl)
        add_library(padec::nccl SHARED IMPORTED)
        set_target_properties(padec::nccl PROPERTIES
          IMPORTED_LOCATION "${_padec_nccl_library}"
          INTERFACE_INCLUDE_DIRECTORIES "${_padec_nccl_include}")
      endif()
    endif()
  endif()
endif()
