# OpenVINO's C++ API for the native runner. Included by its CMakeLists.txt; defines the target mait_runtime.
# OpenVINO: its CMake config (the openvino wheel is a full SDK: openvino/cmake/OpenVINOConfig.cmake).
function(mait_find_openvino)
  mait_python_package(openvino _package)
  find_package(OpenVINO CONFIG QUIET COMPONENTS Runtime HINTS "${_package}/cmake")
  if(NOT OpenVINO_FOUND)
    message(FATAL_ERROR "OpenVINO's C++ SDK not found: pip install openvino==2026.4.1 (its wheel ships the "
                        "headers and OpenVINOConfig.cmake), or set OpenVINO_DIR")
  endif()
  add_library(mait_runtime INTERFACE)
  target_link_libraries(mait_runtime INTERFACE openvino::runtime)
  message(STATUS "OpenVINO: ${OpenVINO_DIR}")
endfunction()

mait_find_openvino()
# oneTBB (OpenVINO's threads) dlopens its NUMA helper with RTLD_DEEPBIND, which ASan refuses, unless told so.
set(MAIT_SANITIZER_TEST_ENVIRONMENT "TBB_ENABLE_SANITIZERS=1")
