# nightshift_include_root(TARGET FOLDER [INTERFACE])
# Makes FOLDER's headers reachable as "FOLDER/x.h" for TARGET and for whatever links TARGET
# PUBLIC-ly, and nothing else of the source tree: the include root build/include/FOLDER/ holds
# only a link named FOLDER to the source folder. Each library gets its own root, so a library
# sees its own headers and those of the libraries it links, and an include in the wrong
# direction (core <- dags, store, executor <- scheduler <- web <- app) is "No such file", a
# compile error. tests/CMakeLists.txt has the test that proves it (unit.boundaries).
function(nightshift_include_root target folder)
  set(root ${PROJECT_BINARY_DIR}/include/${folder})
  file(MAKE_DIRECTORY ${root})
  file(CREATE_LINK ${PROJECT_SOURCE_DIR}/${folder} ${root}/${folder} SYMBOLIC)
  if(ARGV2 STREQUAL "INTERFACE")
    target_include_directories(${target} INTERFACE ${root})
  else()
    target_include_directories(${target} PUBLIC ${root})
  endif()
endfunction()
