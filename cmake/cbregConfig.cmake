# cbreg's CMake package: find_package(cbreg CONFIG REQUIRED), then
#   target_link_libraries(app PRIVATE cbreg::cbreg)          # libcbreg.so
#   target_link_libraries(plugin PRIVATE cbreg::cbreg_static) # libcbreg.a
# Every copy of cbreg in a process shares one set of registries, however
# it was linked. The files are found relative to this one, so the same
# config serves an installed prefix (lib/cmake/cbreg/) and the Python
# package's directory (cbreg/cmake/).
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
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(cbreg
  REQUIRED_VARS cbreg_LIBRARY cbreg_INCLUDE_DIR
  VERSION_VAR cbreg_VERSION)
if(cbreg_FOUND AND NOT TARGET cbreg::cbreg)
  add_library(cbreg::cbreg SHARED IMPORTED)
  set_target_properties(cbreg::cbreg PROPERTIES
    IMPORTED_LOCATION "${cbreg_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${cbreg_INCLUDE_DIR}")
  if(cbreg_STATIC_LIBRARY)
    add_library(cbreg::cbreg_static STATIC IMPORTED)
    set_target_properties(cbreg::cbreg_static PROPERTIES
      IMPORTED_LOCATION "${cbreg_STATIC_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${cbreg_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES "pthread;dl;m")
  endif()
endif()
