# libpadec.so, for dynamic users such as the Python binding (ctypes). It is linked from the
# objects of the static padec target, so both libraries are the same code built with the same
# flags, compiled once.
add_library(padec_shared SHARED $<TARGET_OBJECTS:padec>)
set_target_properties(padec_shared PROPERTIES OUTPUT_NAME padec LINKER_LANGUAGE C)
target_include_directories(padec_shared PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
                                                $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_link_libraries(padec_shared PUBLIC m)
if(PADEC_HAVE_CUDA)
  target_compile_definitions(padec_shared PUBLIC PADEC_HAVE_CUDA=1)
  target_link_libraries(padec_shared PRIVATE CUDA::cudart_static)
  set_target_properties(padec_shared PROPERTIES LINKER_LANGUAGE CUDA)
endif()
# Keep the symbols of the static libraries (cudart_static) inside: a process that also loads
# another CUDA runtime (PyTorch's libcudart.so) must not bind padec's calls to that one, or the
# other way round.
target_link_options(padec_shared PRIVATE "LINKER:--exclude-libs,ALL")
