// Stands in for glibc's <sys/single_threaded.h> (glibc >= 2.32). libstdc++'s reference counting
// (GCC >= 11) reads __libc_single_threaded when that header exists, which binds the library to
// __libc_single_threaded@GLIBC_2.32; with this header it needs nothing newer than glibc 2.17 and loads
// where torch's own wheels do (manylinux_2_28, e.g. Ubuntu 20.04 and JetPack 5). Always "not single
// threaded": atomic reference counts, as on an older glibc. Included only through the compat include
// directory (CMakeLists.txt); tests/test_compile_and_nn.py checks the symbol versions.
#pragma once

static const char evsparse_compat_libc_single_threaded = 0;
#define __libc_single_threaded evsparse_compat_libc_single_threaded
