# ExecuTorch's C++ runtime, from its Python wheel (pip install executorch: headers, shared libraries and
# executorch-config.cmake). Included by the native runner's CMakeLists.txt; defines the target mait_runtime.
if(CMAKE_VERSION VERSION_LESS 3.28)
  # The package's imported targets carry $ORIGIN run paths that CMake writes wrongly before 3.28, so the
  # package leaves them undefined there.
  message(FATAL_ERROR "ExecuTorch's CMake package needs CMake >= 3.28 (this is ${CMAKE_VERSION}): pip install cmake")
endif()
mait_python_package(executorch _executorch_package)
find_package(executorch CONFIG QUIET HINTS "${_executorch_package}/share/cmake")
if(NOT executorch_FOUND OR NOT TARGET executorch::backend_xnnpack)
  message(FATAL_ERROR "ExecuTorch's C++ runtime with its XNNPACK backend not found: pip install executorch==1.5.1 "
                      "(its wheel ships the headers, libraries and executorch-config.cmake), or set executorch_DIR")
endif()
add_library(mait_runtime INTERFACE)
# The optimized and quantized CPU kernels run what a program leaves outside the delegate; the backend and kernel
# libraries register themselves when loaded (their targets carry the link options that keep them).
target_link_libraries(mait_runtime INTERFACE executorch::runtime executorch::backend_xnnpack
                      executorch::kernels_optimized executorch::kernels_quantized executorch::threadpool)
message(STATUS "ExecuTorch: ${executorch_DIR} (${EXECUTORCH_BUILD_VERSION})")
