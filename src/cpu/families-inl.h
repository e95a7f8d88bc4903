// families-inl.h: the per-target entry points through which each op family's unit fills its part
// of a kernel table (tables_hwy.cc assembles them). Included inside xent::cpu::HWY_NAMESPACE by
// every *_hwy.cc unit, once per target; declarations only, so no include guard.

void fill_softmax(KernelTable<float>* t) noexcept;
void fill_softmax(KernelTable<double>* t) noexcept;
void fill_cross_entropy(KernelTable<float>* t) noexcept;
void fill_cross_entropy(KernelTable<double>* t) noexcept;
void fill_bce(KernelTable<float>* t) noexcept;
void fill_bce(KernelTable<double>* t) noexcept;
void fill_bce(KernelTable<BF16>* t) noexcept;  // on probabilities and with logits, float32 inside
void fill_bce(KernelTable<F16>* t) noexcept;
void fill_softcap(KernelTable<float>* t) noexcept;
void fill_softcap(KernelTable<double>* t) noexcept;
// The dense layer of unsigned-byte inputs and its weight gradient (byte_affine_hwy.cc).
void fill_byte_affine(KernelTable<float>* t) noexcept;
void fill_byte_affine(KernelTable<double>* t) noexcept;
// bfloat16 and float16 (half_hwy.cc): the softmax family, cross-entropy and NLL, the token
// statistics, short rows and strided blocks.
void fill_half(KernelTable<BF16>* t) noexcept;
void fill_half(KernelTable<F16>* t) noexcept;
// Soft-capping of bfloat16 and float16 (softcap_hwy.cc: widened to float32, rounded once).
void fill_softcap(KernelTable<BF16>* t) noexcept;
void fill_softcap(KernelTable<F16>* t) noexcept;
// Test hook: y = exp_nonpos(x) for x <= 0 (exp-inl.h), for the ulp test on every ISA.
void fill_exp(KernelTable<float>* t) noexcept;
void fill_exp(KernelTable<double>* t) noexcept;
