// AVX2 + FMA + F16C kernels (compiled with those flags only; chosen at run time).
#define EVSPARSE_ISA_AVX2 1
#define EVSPARSE_TABLE_FN kernels_avx2
#define EVSPARSE_TABLE_ISA Isa::avx2
#define EVSPARSE_TABLE_NAME "avx2"
#include "gather_table.inc"
