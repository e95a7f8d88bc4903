# Install.cmake: `cmake --install build --prefix P` installs the three libraries, their headers,
# the CMake package (P/lib/cmake/xent: xentConfig.cmake, xentConfigVersion.cmake, xentTargets.cmake
# with xent::xent, xent::io, xent::train) and pkg-config files (xent.pc, xent-io.pc,
# xent-train.pc), plus the `xent` tool when it is built. When MPI was found (XENT_HAVE_MPI), also
# xent_mpi with include/xent/mpi.h, xentMpiTargets.cmake (xent::mpi, the package's `mpi`
# component, loaded only when asked for) and xent-mpi.pc. examples/ holds a consumer of each kind;
# tests/install checks them against a fresh install.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS xent xent_io xent_train EXPORT xentTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        FILE_SET HEADERS DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(TARGET xent_cli)
  install(TARGETS xent_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

set(XENT_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/xent)
install(EXPORT xentTargets NAMESPACE xent:: DESTINATION ${XENT_CMAKE_DIR})
# The .pc files list the libraries a part links in one "Requires:" line after the parts it needs
# publicly: <public>@XENT_PC_LINK_REQUIRES@<link-only>. A static archive carries no link line of its
# own, so there both go in Requires; a shared library's go in Requires.private. (One Requires line
# per file: pkg-config, unlike pkgconf, refuses a field that occurs twice.)
if(BUILD_SHARED_LIBS)
  set(XENT_LIBRARY_KIND "shared libraries")
  set(XENT_PC_LINK_REQUIRES "\nRequires.private: ")
else()
  set(XENT_LIBRARY_KIND "static archives")
  set(XENT_PC_LINK_REQUIRES " ")
endif()
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/xentConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/xentConfig.cmake INSTALL_DESTINATION ${XENT_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/xentConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/xentConfig.cmake ${PROJECT_BINARY_DIR}/xentConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/xentDependencies.cmake
        DESTINATION ${XENT_CMAKE_DIR})

# Relocatable: the prefix is found from the .pc file's own place, so `--prefix P` at install time
# works without reconfiguring.
file(RELATIVE_PATH XENT_PC_UP /root/${CMAKE_INSTALL_LIBDIR}/pkgconfig /root)
foreach(pc xent xent-io xent-train)
  configure_file(${PROJECT_SOURCE_DIR}/cmake/${pc}.pc.in ${PROJECT_BINARY_DIR}/${pc}.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/${pc}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endforeach()

if(XENT_HAVE_MPI)
  # A separate export set: a consumer that does not ask for the `mpi` component never needs MPI.
  install(TARGETS xent_mpi EXPORT xentMpiTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
          RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
          FILE_SET HEADERS DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(EXPORT xentMpiTargets NAMESPACE xent:: DESTINATION ${XENT_CMAKE_DIR})
  # xent-mpi.pc requires the MPI's own pkg-config module when it has one (Debian's mpi-c names the
  # default MPI; ompi-c is Open MPI's, mpich MPICH's); otherwise it carries FindMPI's flags.
  pkg_search_module(XENT_PC_MPI QUIET mpi-c ompi-c mpich)
  if(XENT_PC_MPI_FOUND)
    set(XENT_PC_MPI_REQUIRES " ${XENT_PC_MPI_MODULE_NAME}")
    set(XENT_PC_MPI_CFLAGS "")
    set(XENT_PC_MPI_LIBS "")
  else()
    set(XENT_PC_MPI_REQUIRES "")
    list(TRANSFORM MPI_C_INCLUDE_DIRS PREPEND "-I" OUTPUT_VARIABLE _xent_mpi_cflags)
    list(JOIN _xent_mpi_cflags " " XENT_PC_MPI_CFLAGS)
    list(JOIN MPI_C_LIBRARIES " " XENT_PC_MPI_LIBS)
    string(PREPEND XENT_PC_MPI_CFLAGS " ")
    string(PREPEND XENT_PC_MPI_LIBS " ")
  endif()
  configure_file(${PROJECT_SOURCE_DIR}/cmake/xent-mpi.pc.in ${PROJECT_BINARY_DIR}/xent-mpi.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/xent-mpi.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endif()
install(FILES ${PROJECT_SOURCE_DIR}/LICENSE DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/xent)
