# Warnings.cmake: the warning set for xent's own targets (not for third-party code).
add_library(xent_warnings INTERFACE)
target_compile_options(xent_warnings INTERFACE -Wall -Wextra -Wshadow -Wnon-virtual-dtor -Wno-unused-parameter)
