# Warnings.cmake: the warning set for xent's own targets (not for third-party code).
add_library(xent_warnings INTERFACE)
target_compile_options(xent_warnings INTERFACE -Wall -Wextra -Wshadow -Wnon-virtual-dtor -Wno-unused-parameter)
# GCC 12 warns when designated initializers leave members to their defaults, which is how the
# struct arguments (LinearCrossEntropyInputs/Outputs) are meant to be written; clang does not.
target_compile_options(xent_warnings INTERFACE $<$<CXX_COMPILER_ID:GNU>:-Wno-missing-field-initializers>)
