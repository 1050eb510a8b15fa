# cbreg's CMake package: find_package(cbreg CONFIG REQUIRED), then
#   target_link_libraries(your_target PRIVATE cbreg::cbreg)
#
# The files are found relative to this one, so the same config serves an
# installed prefix (lib/cmake/cbreg/, `make install`) and the Python
# package's directory (cbreg/cmake/, `python -m cbreg --cmake_dir`).
# cbreg::cbreg is what fits where the config was found:
#   - an installed prefix: the shared library libcbreg.so (C ABI, no Python);
#   - the Python package: cbreg::python, a static copy of cbreg with the
#     Python adapter (cbreg_nanobind.hpp, cbreg_pybind11.hpp), for extension
#     modules. It is linked into the module with its symbols kept inside,
#     so the module needs nothing at run time: no RPATH into the build's
#     temporary environment, nothing for auditwheel to vendor, no
#     `import cbreg` first. At its first call it joins the process's one
#     set of registries, whichever copy of cbreg owns them.
# Also defined where their files are: cbreg::shared (libcbreg.so),
# cbreg::cbreg_static (libcbreg.a, no Python), cbreg::python.
get_filename_component(_cbreg_here "${CMAKE_CURRENT_LIST_DIR}" ABSOLUTE)
find_path(cbreg_INCLUDE_DIR cbreg.h
  PATHS "${_cbreg_here}/../../../include" "${_cbreg_here}/../include"
  NO_DEFAULT_PATH)
find_library(cbreg_LIBRARY NAMES cbreg
  PATHS "${_cbreg_here}/../.." "${_cbreg_here}/.."
  NO_DEFAULT_PATH)
find_file(cbreg_STATIC_LIBRARY libcbreg.a
  PATHS "${_cbreg_here}/../.." "${_cbreg_here}/.."
  NO_DEFAULT_PATH)
find_file(cbreg_PYTHON_LIBRARY libcbreg_python.a
  PATHS "${_cbreg_here}/.."
  NO_DEFAULT_PATH)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(cbreg
  REQUIRED_VARS cbreg_LIBRARY cbreg_INCLUDE_DIR
  VERSION_VAR cbreg_VERSION)
if(cbreg_FOUND AND NOT TARGET cbreg::cbreg)
  # What a static copy of the Rust library needs from the system.
  set(_cbreg_system_libs "pthread;dl;m")
  if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
    list(APPEND _cbreg_system_libs "rt;util;gcc_s")
  endif()
  add_library(cbreg::shared SHARED IMPORTED)
  set_target_properties(cbreg::shared PROPERTIES
    IMPORTED_LOCATION "${cbreg_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${cbreg_INCLUDE_DIR}")
  if(cbreg_STATIC_LIBRARY)
    add_library(cbreg::cbreg_static STATIC IMPORTED)
    set_target_properties(cbreg::cbreg_static PROPERTIES
      IMPORTED_LOCATION "${cbreg_STATIC_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${cbreg_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES "${_cbreg_system_libs}")
  endif()
  if(cbreg_PYTHON_LIBRARY)
    add_library(cbreg::python STATIC IMPORTED)
    set_target_properties(cbreg::python PROPERTIES
      IMPORTED_LOCATION "${cbreg_PYTHON_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${cbreg_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES "${_cbreg_system_libs}")
    if(NOT APPLE AND NOT WIN32)
      # cbreg's symbols stay inside the module (another module's copy, or
      # a libcbreg.so loaded globally, never stands in for them).
      set_property(TARGET cbreg::python PROPERTY
        INTERFACE_LINK_OPTIONS "LINKER:--exclude-libs,libcbreg_python.a")
    endif()
    add_library(cbreg::cbreg INTERFACE IMPORTED)
    set_property(TARGET cbreg::cbreg PROPERTY INTERFACE_LINK_LIBRARIES cbreg::python)
  else()
    add_library(cbreg::cbreg INTERFACE IMPORTED)
    set_property(TARGET cbreg::cbreg PROPERTY INTERFACE_LINK_LIBRARIES cbreg::shared)
  endif()
endif()
