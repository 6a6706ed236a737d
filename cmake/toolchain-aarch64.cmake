# Cross-compiling the aarch64 wheel on an x86-64 host (scripts/build_wheels.sh): Debian's
# g++-aarch64-linux-gnu. The torch it builds against comes from EVSPARSE_TORCH_ROOTS (aarch64 wheels).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
