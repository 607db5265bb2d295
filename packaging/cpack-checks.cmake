# Read by cpack (CPACK_PROJECT_CONFIG_FILE): the Debian package is built for the prefix
# /usr only. `make package` at the top of the source tree configures build-package/ so;
# cpack in a build tree for another prefix (build/: /usr/local) stops here.
if(NOT CPACK_PACKAGING_INSTALL_PREFIX STREQUAL "/usr")
  message(FATAL_ERROR "vrelay: this build is configured for ${CPACK_PACKAGING_INSTALL_PREFIX}, "
                      "the Debian package needs /usr: run `make package` at the top of the source tree "
                      "(packaging/build-deb.sh)")
endif()
