# folio_set_warnings(target): the project's warning flags; FOLIO_WERROR turns them into errors (CI).
add_library(folio_options INTERFACE)
target_compile_options(folio_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wno-missing-field-initializers>
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${FOLIO_WERROR}>>:-Werror>)
if(FOLIO_X86_V3 AND CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  target_compile_options(folio_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-march=x86-64-v3>)
endif()
if(FOLIO_SANITIZE)
  target_compile_options(folio_options INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined>)
  target_link_options(folio_options INTERFACE -fsanitize=address,undefined)
endif()

option(FOLIO_FUZZ "Build the libFuzzer targets in tests/fuzz (needs clang)" OFF)
if(FOLIO_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "FOLIO_FUZZ needs clang: configure with the fuzz preset (CMAKE_CXX_COMPILER=clang++)")
  endif()
  target_compile_options(folio_options INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined>)
  target_link_options(folio_options INTERFACE -fsanitize=address,undefined)
endif()
