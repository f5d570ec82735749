# The libraries every native runner needs, found by CMake's conventions, each missing one one FATAL_ERROR naming
# what to install. Imported targets: mait::json, mait::valijson, mait::stb, JPEG::JPEG, OpenSSL::Crypto. The
# runtime's SDK is found by its backend's find.cmake (mait_deploy/backends/<runtime>/native/), which defines
# mait_runtime.

# A runtime's Python package folder (a namespace package's too), where a runtime's wheel is its SDK or holds its
# library (each backend's find.cmake says which): asked of the python3 on PATH, never required.
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
