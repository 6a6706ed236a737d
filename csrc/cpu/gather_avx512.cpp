// AVX-512F kernels (compiled with those flags only; chosen at run time).
#define EVSPARSE_ISA_AVX512 1
#define EVSPARSE_TABLE_FN kernels_avx512
#define EVSPARSE_TABLE_ISA Isa::avx512
#define EVSPARSE_TABLE_NAME "avx512"
#include "gather_table.inc"
