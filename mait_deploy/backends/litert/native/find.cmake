# LiteRT's C API: libLiteRt.so from the ai-edge-litert wheel (x86-64 and aarch64), found through the python3 on
# PATH like OpenVINO's and ExecuTorch's SDKs, or under LITERT_ROOT. The wheel has no headers: the subset the
# runner calls is declared in litert_c.h, and a link check proves that this library exports every declared
# function before anything is built against it. Included by the native runner's CMakeLists.txt; defines the target
# mait_runtime.
mait_python_package(ai_edge_litert _litert_package)
find_library(MAIT_LITERT_LIBRARY NAMES LiteRt libLiteRt.so
             HINTS "${LITERT_ROOT}" "$ENV{LITERT_ROOT}" "${_litert_package}" PATH_SUFFIXES lib NO_DEFAULT_PATH)
if(NOT MAIT_LITERT_LIBRARY)
  message(FATAL_ERROR "LiteRT's libLiteRt.so not found: pip install ai-edge-litert==2.3.0 (its wheel ships the "
                      "library), or set LITERT_ROOT to the folder that holds it")
endif()

# The link check: a program that takes the address of every declared function, linked against this library.
set(_litert_check "${CMAKE_CURRENT_BINARY_DIR}/litert_link_check.cpp")
file(WRITE "${_litert_check}" "#include \"litert_c.h\"\n#define MAIT_TAKE(name) reinterpret_cast<void (*)()>(&name),\n"
     "int main() {\n  void (*functions[])() = {MAIT_LITERT_FUNCTIONS(MAIT_TAKE)};\n"
     "  return functions[0] == nullptr ? 1 : 0;\n}\n")
try_compile(_litert_exports "${CMAKE_CURRENT_BINARY_DIR}/litert_link_check" SOURCES "${_litert_check}"
            CMAKE_FLAGS "-DINCLUDE_DIRECTORIES=${CMAKE_CURRENT_LIST_DIR}" LINK_LIBRARIES "${MAIT_LITERT_LIBRARY}"
            CXX_STANDARD 17 OUTPUT_VARIABLE _litert_check_output)
if(NOT _litert_exports)
  string(REGEX MATCHALL "undefined reference to `[A-Za-z0-9_]+" _missing "${_litert_check_output}")
  string(REPLACE "undefined reference to `" "" _missing "${_missing}")
  list(REMOVE_DUPLICATES _missing)
  message(FATAL_ERROR "${MAIT_LITERT_LIBRARY} does not export the LiteRT C API the runner declares "
                      "(litert_c.h, written for ai-edge-litert 2.3.0); missing: ${_missing}")
endif()

add_library(mait_runtime_litert SHARED IMPORTED)
set_target_properties(mait_runtime_litert PROPERTIES IMPORTED_LOCATION "${MAIT_LITERT_LIBRARY}")
add_library(mait_runtime INTERFACE)
target_include_directories(mait_runtime INTERFACE "${CMAKE_CURRENT_LIST_DIR}")
target_link_libraries(mait_runtime INTERFACE mait_runtime_litert)
message(STATUS "LiteRT: ${MAIT_LITERT_LIBRARY}")
