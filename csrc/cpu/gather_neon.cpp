// NEON kernels for aarch64 (NEON is part of the base ARMv8-A ISA, so no extra flags).
#define EVSPARSE_ISA_NEON 1
#define EVSPARSE_TABLE_FN kernels_neon
#define EVSPARSE_TABLE_ISA Isa::neon
#define EVSPARSE_TABLE_NAME "neon"
#include "gather_table.inc"
