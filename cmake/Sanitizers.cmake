# Sanitizers.cmake: -DXENT_SANITIZE=address,undefined or =thread applies to every target.
if(XENT_SANITIZE)
  message(STATUS "xent: building with -fsanitize=${XENT_SANITIZE}")
  add_compile_options(-fsanitize=${XENT_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${XENT_SANITIZE})
endif()
