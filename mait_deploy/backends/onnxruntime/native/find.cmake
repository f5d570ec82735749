# ONNX Runtime's C API for the native runner. Included by its CMakeLists.txt; defines the target mait_runtime.
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

mait_find_onnxruntime()
