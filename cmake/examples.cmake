# Examples. example_graph_step: the decode step (device plan + decode) captured once in a CUDA
# graph and replayed with new lengths and scales (needs CUDA). example_context_parallel_nccl:
# context-parallel decode, one process per GPU, partials exchanged over NCCL and merged (needs
# CUDA and NCCL, cmake/nccl.cmake).
if(PADEC_HAVE_CUDA)
  add_executable(example_graph_step ${PROJECT_SOURCE_DIR}/examples/graph_step.c)
  target_compile_options(example_graph_step PRIVATE ${PADEC_C_WARNINGS})
  target_link_libraries(example_graph_step PRIVATE padec CUDA::cudart_static)
  set_target_properties(example_graph_step PROPERTIES LINKER_LANGUAGE CUDA)
  # Exits 77 (skipped) without a device, 1 on an error or a non-finite output.
  add_test(NAME example_graph_step COMMAND example_graph_step 12)
  set_tests_properties(example_graph_step PROPERTIES LABELS cuda SKIP_RETURN_CODE 77 TIMEOUT 600)
endif()

include(${CMAKE_CURRENT_LIST_DIR}/nccl.cmake)
if(PADEC_HAVE_NCCL)
  add_executable(example_context_parallel_nccl ${PROJECT_SOURCE_DIR}/examples/context_parallel_nccl.c)
  target_compile_options(example_context_parallel_nccl PRIVATE ${PADEC_C_WARNINGS})
  target_link_libraries(example_context_parallel_nccl PRIVATE padec padec::nccl CUDA::cudart_static)
  set_target_properties(example_context_parallel_nccl PROPERTIES LINKER_LANGUAGE CUDA)
  # Both exit 77 (skipped) without enough GPUs: two for the first, one for the second.
  add_test(NAME example_context_parallel_nccl_2ranks COMMAND example_context_parallel_nccl --ranks 2)
  add_test(NAME example_context_parallel_nccl_1rank COMMAND example_context_parallel_nccl --ranks 1)
  set_tests_properties(example_context_parallel_nccl_2ranks example_context_parallel_nccl_1rank
                       PROPERTIES LABELS cuda SKIP_RETURN_CODE 77 TIMEOUT 600)
endif()
