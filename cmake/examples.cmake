# Examples. example_graph_step: the decode step (device plan + decode) captured once in a CUDA
# graph and replayed with new lengths and scales (needs CUDA).
if(PADEC_HAVE_CUDA)
  add_executable(example_graph_step ${PROJECT_SOURCE_DIR}/examples/graph_step.c)
  target_compile_options(example_graph_step PRIVATE ${PADEC_C_WARNINGS})
  target_link_libraries(example_graph_step PRIVATE padec CUDA::cudart_static)
  set_target_properties(example_graph_step PROPERTIES LINKER_LANGUAGE CUDA)
endif()
