# `cmake --install`: the headers, both libraries, the `padec` tool, a CMake package
# (find_package(padec): padec::padec, the shared library; padec::padec_static) and a pkg-config
# file. The Python wheel (pyproject.toml at the root, scikit-build-core) installs only the shared
# library, into the package's padec/_lib/, where the ctypes binding looks first.
include(CMakePackageConfigHelpers)

if(SKBUILD)
  install(TARGETS padec_shared LIBRARY DESTINATION padec/_lib COMPONENT python)
  return()
endif()

# The ABI changes with the minor version until 1.0 (the public structs grow), so the soname
# carries both: libpadec.so.0.5.
set_target_properties(padec_shared PROPERTIES
  VERSION ${PROJECT_VERSION}
  SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR}
  EXPORT_NAME padec)
set_target_properties(padec PROPERTIES EXPORT_NAME padec_static)

install(FILES include/padec.h include/padec_cuda.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS padec_shared EXPORT padecTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
# The static library links the CUDA runtime's static library publicly (CUDA::cudart_static), so
# its target needs CUDAToolkit in the consumer; it has an export set of its own, loaded only where
# that dependency is found, so that the shared library's users need nothing of CUDA.
install(TARGETS padec EXPORT padecStaticTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS padec_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

set(PADEC_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/padec)
install(EXPORT padecTargets NAMESPACE padec:: DESTINATION ${PADEC_CMAKE_DIR})
install(EXPORT padecStaticTargets NAMESPACE padec:: DESTINATION ${PADEC_CMAKE_DIR})
configure_package_config_file(cmake/padecConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/padecConfig.cmake INSTALL_DESTINATION ${PADEC_CMAKE_DIR})
# Minor versions are not compatible with each other before 1.0 (see the soname).
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/padecConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/padecConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/padecConfigVersion.cmake
        DESTINATION ${PADEC_CMAKE_DIR})

file(RELATIVE_PATH PADEC_PC_TO_PREFIX "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" PADEC_PC_TO_PREFIX "${PADEC_PC_TO_PREFIX}")
configure_file(cmake/padec.pc.in ${CMAKE_CURRENT_BINARY_DIR}/padec.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/padec.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
