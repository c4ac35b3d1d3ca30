# Cross-compiling for 64-bit Windows with mingw-w64 (Debian: gcc-mingw-w64-x86-64), e.g.
#
#   cmake -S . -B build-win -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64-x86_64.cmake
#
# The tests then run through Wine: CMAKE_CROSSCOMPILING_EMULATOR makes ctest start every
# test executable as `wine test_x.exe NAME` (see `make test-windows`).
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

set(LSOCK_MINGW_PREFIX x86_64-w64-mingw32 CACHE STRING "mingw-w64 tool prefix")
set(CMAKE_C_COMPILER ${LSOCK_MINGW_PREFIX}-gcc)
set(CMAKE_RC_COMPILER ${LSOCK_MINGW_PREFIX}-windres)

set(CMAKE_FIND_ROOT_PATH /usr/${LSOCK_MINGW_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Link the C runtime helpers and winpthreads statically, so the .exe files run under Wine
# (or on Windows) without mingw's DLLs next to them.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static-libgcc")

find_program(LSOCK_WINE NAMES wine64 wine)
if(LSOCK_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${LSOCK_WINE})
endif()
