# Every third-party dependency of the build is found here. The Debian packages that provide them
# are listed once, in tools/deps.sh, which both README commands run.
find_package(Threads REQUIRED)
# On the GPU machine (no apt) the Debian files travel in a folder named by FOLIO_DEPS_DIR,
# made by tools/gpu_prepare.sh.
set(FOLIO_DEPS_DIR "" CACHE PATH "Folder with carried headers and libraries (GPU machine)")
if(FOLIO_DEPS_DIR)
  list(PREPEND CMAKE_PREFIX_PATH "${FOLIO_DEPS_DIR}")
endif()

# libsentencepiece: pkg-config where there is one, else a plain search.
add_library(folio_sentencepiece INTERFACE)
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(SPM QUIET IMPORTED_TARGET sentencepiece)
endif()
if(TARGET PkgConfig::SPM)
  target_link_libraries(folio_sentencepiece INTERFACE PkgConfig::SPM)
else()
  find_path(SPM_INCLUDE_DIR sentencepiece_processor.h)
  find_library(SPM_LIBRARY sentencepiece)
  if(NOT SPM_INCLUDE_DIR OR NOT SPM_LIBRARY)
    message(FATAL_ERROR "libsentencepiece not found: install libsentencepiece-dev (bash tools/deps.sh)")
  endif()
  target_include_directories(folio_sentencepiece INTERFACE "${SPM_INCLUDE_DIR}")
  target_link_libraries(folio_sentencepiece INTERFACE "${SPM_LIBRARY}")
endif()

find_package(nlohmann_json 3.10 REQUIRED)

# cpp-httplib for folio-server and the remote engine (target folio_httplib). Debian builds it as a
# library (libcpp-httplib.so) whose header must be compiled with the flags it was built with, so
# its pkg-config file is used; on the GPU machine (no apt) tools/gpu_prepare.sh carries the header,
# the library and what it links to in FOLIO_DEPS_DIR, with Debian's flags set here. Where neither
# is found, folio-server and --backend remote are not built.
add_library(folio_httplib INTERFACE)
if(PkgConfig_FOUND)
  pkg_check_modules(HTTPLIB QUIET IMPORTED_TARGET cpp-httplib)
endif()
set(FOLIO_HAVE_HTTPLIB OFF)
if(TARGET PkgConfig::HTTPLIB)
  target_link_libraries(folio_httplib INTERFACE PkgConfig::HTTPLIB)
  set(FOLIO_HAVE_HTTPLIB ON)
elseif(FOLIO_DEPS_DIR)
  find_path(HTTPLIB_INCLUDE_DIR httplib.h PATHS "${FOLIO_DEPS_DIR}/include" NO_DEFAULT_PATH)
  find_library(HTTPLIB_LIBRARY cpp-httplib PATHS "${FOLIO_DEPS_DIR}/lib/httplib" NO_DEFAULT_PATH)
  if(HTTPLIB_INCLUDE_DIR AND HTTPLIB_LIBRARY)
    target_include_directories(folio_httplib INTERFACE "${HTTPLIB_INCLUDE_DIR}")
    target_compile_definitions(folio_httplib INTERFACE CPPHTTPLIB_OPENSSL_SUPPORT CPPHTTPLIB_ZLIB_SUPPORT
                                                       CPPHTTPLIB_BROTLI_SUPPORT)
    target_link_libraries(folio_httplib INTERFACE "${HTTPLIB_LIBRARY}")
    target_link_options(folio_httplib INTERFACE "LINKER:-rpath-link,${FOLIO_DEPS_DIR}/lib/httplib")
    set(FOLIO_HAVE_HTTPLIB ON)
  endif()
endif()
if(NOT FOLIO_HAVE_HTTPLIB)
  message(STATUS "Folio: cpp-httplib not found (libcpp-httplib-dev): folio-server and --backend remote are not built")
endif()

if(FOLIO_APP)
  find_package(Qt6 6.4 REQUIRED COMPONENTS Core Gui Widgets Test Sql Pdf PdfWidgets Charts Concurrent)
elseif(FOLIO_FUZZ)
  # The document loaders (core/docs) are fuzzed too where Qt is installed.
  find_package(Qt6 6.4 QUIET COMPONENTS Core Gui Pdf)
endif()

set(FOLIO_HAVE_CUDA OFF)
if(NOT FOLIO_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    # CMake 3.25 does not know nvcc's C++20 flag (nvcc 12+ has it): teach it.
    if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    set(CMAKE_CUDA_STANDARD 20)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    set(FOLIO_HAVE_CUDA ON)
  elseif(FOLIO_CUDA STREQUAL "ON")
    message(FATAL_ERROR "FOLIO_CUDA=ON but no CUDA compiler (nvcc) was found")
  endif()
endif()
message(STATUS "Folio: app=${FOLIO_APP} cuda=${FOLIO_HAVE_CUDA} sanitize=${FOLIO_SANITIZE}")
