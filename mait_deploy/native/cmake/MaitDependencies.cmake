# Every SDK the native runner needs, found by CMake's conventions, each missing one one FATAL_ERROR naming
# what to install. Imported targets: mait::json, mait::valijson, mait::stb, JPEG::JPEG, OpenSSL::Crypto and (from
# mait_find_runtime) mait::runtime.

# The runtime's Python package folder (a namespace package's too), where a runtime's wheel is the SDK (OpenVINO,
# some plug-ins) or holds its library (ONNX Runtime): asked of the python3 on PATH, never required.
function(mait_python_package name out)
  find_package(Python3 COMPONENTS Interpreter QUIET)
  set(${out} "" PARENT_SCOPE)
  if(Python3_Interpreter_FOUND)
    execute_process(
      COMMAND "${Python3_EXECUTABLE}" -c "import importlib.util, os; s = importlib.util.find_spec('${name}'); print('' if not s else os.path.dirname(s.origin) if s.origin else next(iter(s.submodule_search_locations or []), ''))"
      OUTPUT_VARIABLE _where OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    set(${out} "${_where}" PARENT_SCOPE)
  endif()
endfunction()

find_package(nlohmann_json 3.9 CONFIG QUIET)
if(NOT nlohmann_json_FOUND)
  message(FATAL_ERROR "nlohmann/json (>= 3.9) not found: apt-get install nlohmann-json3-dev (or set nlohmann_json_DIR)")
endif()
add_library(mait::json ALIAS nlohmann_json::nlohmann_json)

find_path(MAIT_VALIJSON_INCLUDE valijson/validator.hpp)
if(NOT MAIT_VALIJSON_INCLUDE)
  message(FATAL_ERROR "valijson (JSON Schema validator) not found: apt-get install libvalijson-dev (or set CMAKE_PREFIX_PATH)")
endif()
add_library(mait_valijson INTERFACE)
target_include_directories(mait_valijson SYSTEM INTERFACE "${MAIT_VALIJSON_INCLUDE}")
add_library(mait::valijson ALIAS mait_valijson)

find_path(MAIT_STB_INCLUDE stb_image.h PATH_SUFFIXES stb)
find_library(MAIT_STB_LIBRARY stb)
if(NOT MAIT_STB_INCLUDE OR NOT MAIT_STB_LIBRARY)
  message(FATAL_ERROR "stb_image not found: apt-get install libstb-dev (or set CMAKE_PREFIX_PATH)")
endif()
add_library(mait_stb UNKNOWN IMPORTED)
set_target_properties(mait_stb PROPERTIES IMPORTED_LOCATION "${MAIT_STB_LIBRARY}"
                      INTERFACE_INCLUDE_DIRECTORIES "${MAIT_STB_INCLUDE}")
add_library(mait::stb ALIAS mait_stb)

find_package(JPEG QUIET)
if(NOT JPEG_FOUND)
  message(FATAL_ERROR "libjpeg (JPEG decoding, as Pillow's) not found: apt-get install libjpeg-dev")
endif()

find_package(OpenSSL QUIET COMPONENTS Crypto)
if(NOT OpenSSL_FOUND)
  message(FATAL_ERROR "OpenSSL (sha256 of the bundle's files) not found: apt-get install libssl-dev")
endif()

# ONNX Runtime: the C API headers (Debian trixie's libonnxruntime-dev, or ONNXRUNTIME_ROOT/include) and the
# library from the system or from the onnxruntime Python package (its wheel ships the library, not the headers).
function(mait_find_onnxruntime)
  mait_python_package(onnxruntime _package)
  # The last hint: where tools/fetch-onnxruntime-headers unpacks trixie's headers on a bookworm host.
  find_path(MAIT_ORT_INCLUDE onnxruntime_cxx_api.h
            HINTS "${ONNXRUNTIME_ROOT}" "$ENV{ONNXRUNTIME_ROOT}" "$ENV{HOME}/.cache/mait-deploy/sdk/onnxruntime/usr"
            PATH_SUFFIXES include/onnxruntime onnxruntime include)
  if(NOT MAIT_ORT_INCLUDE)
    message(FATAL_ERROR "ONNX Runtime's C/C++ headers not found: apt-get install libonnxruntime-dev (Debian "
                        "trixie, Raspberry Pi OS); on bookworm run tools/fetch-onnxruntime-headers from a "
                        "mait-deploy checkout; or set ONNXRUNTIME_ROOT to a folder with include/onnxruntime")
  endif()
  find_library(MAIT_ORT_LIBRARY NAMES onnxruntime
               HINTS "${ONNXRUNTIME_ROOT}" "$ENV{ONNXRUNTIME_ROOT}" PATH_SUFFIXES lib lib64)
  if(NOT MAIT_ORT_LIBRARY AND _package)
    file(GLOB _wheel_library "${_package}/capi/libonnxruntime.so.*")
    if(_wheel_library)
      # The wheel holds libonnxruntime.so.1.N.M only; the loader looks for its soname, libonnxruntime.so.1:
      # link it under that name in the build folder (which the build's RPATH names).
      list(GET _wheel_library 0 _first)
      set(_links "${CMAKE_BINARY_DIR}/runtime-libs")
      file(MAKE_DIRECTORY "${_links}")
      file(CREATE_LINK "${_first}" "${_links}/libonnxruntime.so.1" SYMBOLIC)
      file(CREATE_LINK "${_first}" "${_links}/libonnxruntime.so" SYMBOLIC)
      set(MAIT_ORT_LIBRARY "${_links}/libonnxruntime.so" CACHE FILEPATH "ONNX Runtime's library" FORCE)
    endif()
  endif()
  if(MAIT_ORT_LIBRARY STREQUAL "${CMAKE_BINARY_DIR}/runtime-libs/libonnxruntime.so")
    # The installed SDK carries the soname link too (lib/mait-runtime, on the library's RUNPATH).
    set_property(GLOBAL APPEND PROPERTY MAIT_RUNTIME_LINKS "${CMAKE_BINARY_DIR}/runtime-libs/libonnxruntime.so.1")
  endif()
  if(NOT MAIT_ORT_LIBRARY)
    message(FATAL_ERROR "ONNX Runtime's library not found: apt-get install libonnxruntime-dev, or pip install "
                        "onnxruntime (its wheel holds libonnxruntime.so), or set ONNXRUNTIME_ROOT")
  endif()
  add_library(mait_runtime SHARED IMPORTED GLOBAL)
  set_target_properties(mait_runtime PROPERTIES IMPORTED_LOCATION "${MAIT_ORT_LIBRARY}"
                        INTERFACE_INCLUDE_DIRECTORIES "${MAIT_ORT_INCLUDE}")
  message(STATUS "ONNX Runtime: ${MAIT_ORT_INCLUDE}, ${MAIT_ORT_LIBRARY}")
endfunction()

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

macro(mait_find_runtime runtime)
  if("${runtime}" STREQUAL "onnxruntime")
    mait_find_onnxruntime()
  elseif("${runtime}" STREQUAL "openvino")
    mait_find_openvino()
  else()
    # TensorRT's reason, and what a user of that device does instead: its registry entry (`mait-deploy app` says it).
    message(FATAL_ERROR "the native runner has no backend for '${runtime}': onnxruntime, openvino, or a plug-in "
                        "backend with a native/ folder (see docs/native.md)")
  endif()
  add_library(mait::runtime ALIAS mait_runtime)
endmacro()
