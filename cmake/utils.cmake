# Helpers for building edlm_ext._C against an installed PyTorch.

# edlm_torch_archs(<out_var> <arch_list>)
# Turn a TORCH_CUDA_ARCH_LIST string ("8.0;9.0", "8.0 9.0+PTX", "9.0a") into
# CMAKE_CUDA_ARCHITECTURES entries: "X.Y" -> "XY-real" (SASS only),
# "X.Y+PTX" -> "XY" (SASS and PTX), an "a" suffix is kept ("9.0a" -> "90a-real").
#
# Example:
#   edlm_torch_archs(archs "8.0;9.0+PTX")   # archs = "80-real;90"
#   set_target_properties(_C PROPERTIES CUDA_ARCHITECTURES "${archs}")
function(edlm_torch_archs out_var arch_list)
  string(REPLACE " " ";" items "${arch_list}")
  set(result "")
  foreach(item IN LISTS items)
    if(item STREQUAL "")
      continue()
    endif()
    set(ptx OFF)
    if(item MATCHES "\\+PTX$")
      set(ptx ON)
      string(REGEX REPLACE "\\+PTX$" "" item "${item}")
    endif()
    if(NOT item MATCHES "^([0-9]+)\\.([0-9]+)([af]?)$")
      message(FATAL_ERROR "edlm_torch_archs: cannot parse CUDA arch '${item}' in '${arch_list}'")
    endif()
    set(code "${CMAKE_MATCH_1}${CMAKE_MATCH_2}${CMAKE_MATCH_3}")
    if(ptx)
      list(APPEND result "${code}")
    else()
      list(APPEND result "${code}-real")
    endif()
  endforeach()
  set(${out_var} "${result}" PARENT_SCOPE)
endfunction()

# edlm_link_torch(<target> CUDA <ON|OFF>)
# Add PyTorch's headers, libraries and ABI flag (from the EDLM_TORCH_* cache
# variables that setup.py passes) to a target; with CUDA ON also c10_cuda,
# torch_cuda and the shared CUDA runtime.
#
# Example:
#   edlm_link_torch(_C CUDA ${EDLM_WITH_CUDA})
function(edlm_link_torch target)
  cmake_parse_arguments(ARG "" "CUDA" "" ${ARGN})
  target_include_directories(${target} SYSTEM PRIVATE ${EDLM_TORCH_INCLUDE_DIRS})
  target_link_directories(${target} PRIVATE ${EDLM_TORCH_LIBRARY_DIR})
  target_compile_definitions(${target} PRIVATE _GLIBCXX_USE_CXX11_ABI=${EDLM_CXX11_ABI})
  target_link_libraries(${target} PRIVATE c10 torch_cpu torch)
  if(ARG_CUDA)
    target_link_libraries(${target} PRIVATE c10_cuda torch_cuda CUDA::cudart)
  endif()
  set_target_properties(${target} PROPERTIES BUILD_RPATH "${EDLM_TORCH_LIBRARY_DIR}"
                                             INSTALL_RPATH "${EDLM_TORCH_LIBRARY_DIR}")
endfunction()
