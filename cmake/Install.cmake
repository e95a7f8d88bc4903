# Install.cmake: `cmake --install build --prefix P` installs the three libraries, their headers,
# the CMake package (P/lib/cmake/xent: xentConfig.cmake, xentConfigVersion.cmake, xentTargets.cmake
# with xent::xent, xent::io, xent::train) and pkg-config files (xent.pc, xent-io.pc,
# xent-train.pc), plus the `xent` tool when it is built. examples/ holds a consumer of each kind;
# tests/install checks both against a fresh install.
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
if(BUILD_SHARED_LIBS)
  set(XENT_LIBRARY_KIND "shared libraries")
  set(XENT_PC_REQUIRES "Requires.private")
else()
  set(XENT_LIBRARY_KIND "static archives")
  set(XENT_PC_REQUIRES "Requires")
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
install(FILES ${PROJECT_SOURCE_DIR}/LICENSE DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/xent)
