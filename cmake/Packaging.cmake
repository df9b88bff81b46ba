# cmake/Packaging.cmake - Debian packages built by CPack (-DALLOC_DEB=ON,
# then `cpack -G DEB` in the build directory; docs/deploy.md):
#   liballoc0     liballoc.so.0 and the preload drop-in template
#                 (${datadir}/liballoc0/liballoc-preload.conf)
#   liballoc-dev  headers, liballoc.a, the liballoc.so link, the CMake
#                 package and liballoc.pc
#   allocd        allocd, allocctl, the dashboard, allocd.service with the
#                 nonroot drop-in (runs as the system user allocd, which
#                 postinst creates with /var/lib/allocd; purge removes both)
# The install components are those of the install() rules: runtime, dev,
# agent.  The version is the project's.  Each description's first line is
# the package's synopsis.
if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  message(FATAL_ERROR "ALLOC_DEB: Debian packages install to /usr; configure with -DCMAKE_INSTALL_PREFIX=/usr")
endif()
if(ALLOC_SANITIZE OR ALLOC_TSAN)
  message(FATAL_ERROR "ALLOC_DEB: packages come from a plain build, not a sanitizer build")
endif()

# ---- systemd files, with the paths of this install ----------------------------
# /usr/lib/systemd/system: where packages put units (systemd and
# deb-systemd-helper read it; /lib/systemd/system is the same directory on
# a merged /usr).
set(ALLOC_UNIT_DIR ${CMAKE_INSTALL_PREFIX}/lib/systemd/system)
set(gen ${PROJECT_BINARY_DIR}/deb)
file(READ ${PROJECT_SOURCE_DIR}/deploy/systemd/allocd.service unit)
string(REPLACE "/usr/local/sbin/allocd" "${CMAKE_INSTALL_FULL_SBINDIR}/allocd" unit "${unit}")
file(WRITE ${gen}/allocd.service "${unit}")
file(READ ${PROJECT_SOURCE_DIR}/deploy/systemd/allocd-nonroot.conf dropin)
file(WRITE ${gen}/nonroot.conf
  "# Installed by the allocd package, whose postinst creates the system user\n"
  "# allocd and /var/lib/allocd; the useradd below is done.  To run allocd as\n"
  "# root instead, override User=/Group= in /etc/systemd/system/allocd.service.d/.\n"
  "${dropin}")
file(READ ${PROJECT_SOURCE_DIR}/deploy/systemd/liballoc-preload.conf preload)
string(REPLACE "/usr/local/lib/liballoc.so.0" "${CMAKE_INSTALL_FULL_LIBDIR}/liballoc.so.0" preload "${preload}")
string(REPLACE "cp deploy/systemd/liballoc-preload.conf"
  "ln -s ${CMAKE_INSTALL_FULL_DATADIR}/liballoc0/liballoc-preload.conf" preload "${preload}")
string(REPLACE "# The soname installed by `cmake --install` with the default prefix."
  "# liballoc0's library, by its soname." preload "${preload}")
file(WRITE ${gen}/liballoc-preload.conf "${preload}")
# configure again when the sources of these copies change
set_property(DIRECTORY ${PROJECT_SOURCE_DIR} APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
  ${PROJECT_SOURCE_DIR}/deploy/systemd/allocd.service ${PROJECT_SOURCE_DIR}/deploy/systemd/allocd-nonroot.conf
  ${PROJECT_SOURCE_DIR}/deploy/systemd/liballoc-preload.conf)

install(FILES ${gen}/allocd.service DESTINATION ${ALLOC_UNIT_DIR} COMPONENT agent)
install(FILES ${gen}/nonroot.conf DESTINATION ${ALLOC_UNIT_DIR}/allocd.service.d COMPONENT agent)
install(FILES ${gen}/liballoc-preload.conf DESTINATION ${CMAKE_INSTALL_DATADIR}/liballoc0 COMPONENT runtime)

# ---- CPack --------------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME liballoc)
set(CPACK_PACKAGE_VENDOR "liballoc")
set(CPACK_PACKAGE_CONTACT "liballoc maintainers <liballoc@localhost>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime dev agent)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)            # <name>_<version>-<release>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)             # dpkg-shlibdeps: libc6, libmicrohttpd12, ...
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# dpkg-shlibdeps must find liballoc.so.0 of this very build for what links it
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${PROJECT_BINARY_DIR}/liballoc)

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME liballoc0)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)       # shlibs file and ldconfig in postinst/postrm
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION "liballoc: general-purpose malloc for Linux (shared library)
A drop-in replacement for glibc's malloc, preloaded (LD_PRELOAD) into any
program.  Each process publishes its allocator statistics in /dev/shm for
allocd.  ${CMAKE_INSTALL_FULL_DATADIR}/liballoc0/liballoc-preload.conf is a
systemd drop-in that preloads it into one service.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME liballoc-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "liballoc0 (= ${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE})")
set(CPACK_DEBIAN_DEV_DESCRIPTION "liballoc: general-purpose malloc for Linux (development files)
Headers (alloc.h, alloc_shm.h), the static library, the CMake package
(find_package(liballoc)) and the pkg-config file.")

set(CPACK_DEBIAN_AGENT_PACKAGE_NAME allocd)
set(CPACK_DEBIAN_AGENT_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_AGENT_PACKAGE_DEPENDS "adduser")  # postinst; the libraries come from shlibdeps
set(CPACK_DEBIAN_AGENT_PACKAGE_RECOMMENDS "liballoc0")
set(CPACK_DEBIAN_AGENT_DESCRIPTION "liballoc's host agent: allocator telemetry, history, live tuning
allocd collects the statistics of every process using liballoc, keeps their
history in SQLite, serves a JSON API, Prometheus metrics and a web
dashboard on 127.0.0.1:9470, and pushes configuration changes into running
processes.  allocctl is its command-line client.  The systemd unit runs it
as the system user allocd with two capabilities; its state is in
/var/lib/allocd (removed on purge).")
set(CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_EXTRA
  ${PROJECT_SOURCE_DIR}/deploy/debian/postinst ${PROJECT_SOURCE_DIR}/deploy/debian/prerm
  ${PROJECT_SOURCE_DIR}/deploy/debian/postrm)
set(CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_STRICT_PERMISSION ON)   # maintainer scripts 0755

include(CPack)
