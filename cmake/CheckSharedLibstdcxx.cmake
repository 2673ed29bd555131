# Run after linking the extension (cmake -DLIBRARY=... -DNM=... -DCXX=... -P this file).
# torch and Python load the shared libstdc++. A compiler that links its own copy into the
# extension (-static-libstdc++, which some toolchain wrappers add) leaves two copies of the C++
# runtime in one process, and the first stream output in the extension (building an error
# message, say) crashes with a segmentation fault. Refuse such a build with the cure instead.
if(NOT NM)
  return()
endif()
execute_process(COMMAND "${NM}" -D --defined-only "${LIBRARY}" OUTPUT_VARIABLE _symbols
                RESULT_VARIABLE _rc ERROR_QUIET)
if(NOT _rc EQUAL 0)
  return()
endif()
# std::ostream::_M_insert<long>: defined in libstdc++ itself, never in code that only uses it.
if(_symbols MATCHES "_ZNSo9_M_insertIlEERSoT_")
  message(FATAL_ERROR
    "the C++ compiler ${CXX} linked its own copy of libstdc++ into ${LIBRARY} "
    "(-static-libstdc++, or a compiler wrapper that adds it). torch loads the shared libstdc++, "
    "and two copies of it in one process crash the extension. Build with a compiler that links "
    "libstdc++ shared, for example: CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++ pip install .")
endif()
