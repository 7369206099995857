# clipo_gpulibs: cuBLASLt and NCCL, in their own shared library (clipo_gpulibs.so, next to clipo.node) that the
# addon opens with dlopen at run time (native/gpulibs/). The addon never links them, so it builds and runs where
# they are missing; `clipo bench backends` reports what was found here and why not.
#
# Where the libraries are looked for, in this order, each library's header and shared object from the same place:
#   1. CLIPO_NVIDIA_ROOT (CMake variable or environment): the `nvidia` folder of the NVIDIA Python wheels
#      (nvidia/cu13/{include,lib} for cuBLAS, nvidia/nccl/{include,lib} for NCCL; also nvidia/cublas/ of the CUDA 12
#      wheels), or a folder that contains such an `nvidia` folder;
#   2. the CUDA toolkit (find_package(CUDAToolkit)), and /usr for a system NCCL;
#   3. python3's `nvidia` package (`import nvidia; nvidia.__path__`), where pip installed the wheels.
# find_package(CUDAToolkit) alone does not find the wheels' layout (no unversioned .so, no CMake config).
#
# CLIPO_GPULIBS: AUTO builds the library when CUDA is on and at least one of the two is found; ON fails the
# configure step unless both are found; OFF never builds it.
set(CLIPO_GPULIBS "AUTO" CACHE STRING "Build clipo_gpulibs (cuBLASLt + NCCL, loaded at run time): AUTO, ON or OFF")
# kept in the cache, so that CMake's automatic re-runs (after a CMakeLists edit) find the same libraries
set(CLIPO_NVIDIA_ROOT "" CACHE PATH "the NVIDIA wheels' nvidia folder (environment CLIPO_NVIDIA_ROOT sets it too)")
if(NOT "$ENV{CLIPO_NVIDIA_ROOT}" STREQUAL "")
  set(CLIPO_NVIDIA_ROOT "$ENV{CLIPO_NVIDIA_ROOT}" CACHE PATH "the NVIDIA wheels' nvidia folder" FORCE)
endif()

set(_gl_built 0)
set(_gl_why "")
set(_gl_cublas_inc "")
set(_gl_cublas_lib "")
set(_gl_cublas_why "not searched")
set(_gl_nccl_inc "")
set(_gl_nccl_lib "")
set(_gl_nccl_why "not searched")
set(_gl_searched "")

# The shortest name among lib<base>.so and lib<base>.so.<version> in DIR (the wheels ship only versioned names).
function(_clipo_pick_library dir base out)
  file(GLOB _c "${dir}/lib${base}.so" "${dir}/lib${base}.so.[0-9]*")
  set(_best "")
  foreach(f ${_c})
    string(LENGTH "${f}" _l)
    if(_best STREQUAL "" OR _l LESS _best_len)
      set(_best "${f}")
      set(_best_len ${_l})
    endif()
  endforeach()
  set(${out} "${_best}" PARENT_SCOPE)
endfunction()

# First candidate "include|lib" pair that has HEADER and lib<BASE>.so*; sets <var>_inc, <var>_lib and <var>_why.
function(_clipo_find_pair var header base)
  set(_tried "")
  foreach(pair ${ARGN})
    string(REPLACE "|" ";" _p "${pair}")
    list(GET _p 0 _inc)
    list(GET _p 1 _libdir)
    if(NOT EXISTS "${_inc}/${header}" AND NOT EXISTS "${_libdir}")
      continue()
    endif()
    list(APPEND _tried "${_inc}")
    if(EXISTS "${_inc}/${header}")
      _clipo_pick_library("${_libdir}" "${base}" _lib)
      if(_lib)
        set(${var}_inc "${_inc}" PARENT_SCOPE)
        set(${var}_lib "${_lib}" PARENT_SCOPE)
        set(${var}_why "" PARENT_SCOPE)
        return()
      endif()
    endif()
  endforeach()
  if(_tried)
    string(REPLACE ";" ", " _t "${_tried}")
    set(${var}_why "${header} with lib${base}.so* not found (looked in ${_t}); set CLIPO_NVIDIA_ROOT to the wheels' nvidia folder" PARENT_SCOPE)
  else()
    set(${var}_why "${header} not found: no CUDA toolkit copy, no CLIPO_NVIDIA_ROOT, no python3 `nvidia` package (pip install nvidia-cublas nvidia-nccl-cu13, or set CLIPO_NVIDIA_ROOT)" PARENT_SCOPE)
  endif()
endfunction()

if(CLIPO_GPULIBS STREQUAL "OFF")
  set(_gl_why "CLIPO_GPULIBS=OFF")
elseif(NOT CLIPO_WITH_CUDA)
  set(_gl_why "the CUDA kernels are off (no CUDA compiler, or CLIPO_CUDA=OFF), so nothing links cuBLASLt or NCCL")
  if(CLIPO_GPULIBS STREQUAL "ON")
    message(FATAL_ERROR "CLIPO_GPULIBS=ON needs a CUDA build: ${_gl_why}")
  endif()
else()
  # the roots of the NVIDIA wheels: CLIPO_NVIDIA_ROOT first, python3's `nvidia` package last
  set(_roots "")
  foreach(r ${CLIPO_NVIDIA_ROOT})
    list(APPEND _roots "${r}" "${r}/nvidia")
  endforeach()
  set(_py_roots "")
  find_program(CLIPO_PYTHON3 NAMES python3)
  if(CLIPO_PYTHON3)
    execute_process(COMMAND ${CLIPO_PYTHON3} -c "import nvidia; print(';'.join(list(nvidia.__path__)))"
      OUTPUT_VARIABLE _py_roots ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _py_rc TIMEOUT 30)
    if(NOT _py_rc EQUAL 0)
      set(_py_roots "")
    endif()
  endif()
  set(_tk_inc "${CUDAToolkit_INCLUDE_DIRS}")
  list(GET _tk_inc 0 _tk_inc0)
  set(_cublas_pairs "")
  set(_nccl_pairs "")
  foreach(r ${_roots})
    list(APPEND _cublas_pairs "${r}/cu13/include|${r}/cu13/lib" "${r}/cublas/include|${r}/cublas/lib")
    list(APPEND _nccl_pairs "${r}/nccl/include|${r}/nccl/lib")
  endforeach()
  list(APPEND _cublas_pairs "${_tk_inc0}|${CUDAToolkit_LIBRARY_DIR}")
  list(APPEND _nccl_pairs "${_tk_inc0}|${CUDAToolkit_LIBRARY_DIR}" "/usr/include|/usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}")
  foreach(r ${_py_roots})
    list(APPEND _cublas_pairs "${r}/cu13/include|${r}/cu13/lib" "${r}/cublas/include|${r}/cublas/lib")
    list(APPEND _nccl_pairs "${r}/nccl/include|${r}/nccl/lib")
  endforeach()
  set(_gl_searched "CLIPO_NVIDIA_ROOT=${CLIPO_NVIDIA_ROOT}; CUDA toolkit ${CUDAToolkit_LIBRARY_DIR}; python3 nvidia=${_py_roots}")
  _clipo_find_pair(_gl_cublas cublasLt.h cublasLt ${_cublas_pairs})
  _clipo_find_pair(_gl_nccl nccl.h nccl ${_nccl_pairs})
  if(CLIPO_GPULIBS STREQUAL "ON" AND (NOT _gl_cublas_lib OR NOT _gl_nccl_lib))
    message(FATAL_ERROR "CLIPO_GPULIBS=ON: cuBLASLt: ${_gl_cublas_lib}${_gl_cublas_why}; NCCL: ${_gl_nccl_lib}${_gl_nccl_why}")
  endif()
  if(_gl_cublas_lib OR _gl_nccl_lib)
    set(_gl_built 1)
    add_library(clipo_gpulibs SHARED ${CMAKE_CURRENT_SOURCE_DIR}/native/gpulibs/lib/gpulibs.cu)
    set_target_properties(clipo_gpulibs PROPERTIES PREFIX "" SUFFIX ".so" CUDA_VISIBILITY_PRESET hidden
      CXX_VISIBILITY_PRESET hidden)
    target_include_directories(clipo_gpulibs PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/native)
    target_compile_options(clipo_gpulibs PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-O3 -lineinfo>)
    target_link_libraries(clipo_gpulibs PRIVATE CUDA::cudart_static)
    set(_rpath "")
    if(_gl_cublas_lib)
      add_library(clipo_cublasLt SHARED IMPORTED)
      set_target_properties(clipo_cublasLt PROPERTIES IMPORTED_LOCATION "${_gl_cublas_lib}"
        INTERFACE_INCLUDE_DIRECTORIES "${_gl_cublas_inc}")
      target_link_libraries(clipo_gpulibs PRIVATE clipo_cublasLt)
      target_compile_definitions(clipo_gpulibs PRIVATE CLIPO_HAVE_CUBLASLT=1)
      get_filename_component(_d "${_gl_cublas_lib}" DIRECTORY)
      list(APPEND _rpath "${_d}")
    endif()
    if(_gl_nccl_lib)
      add_library(clipo_nccl SHARED IMPORTED)
      set_target_properties(clipo_nccl PROPERTIES IMPORTED_LOCATION "${_gl_nccl_lib}"
        INTERFACE_INCLUDE_DIRECTORIES "${_gl_nccl_inc}")
      target_link_libraries(clipo_gpulibs PRIVATE clipo_nccl)
      target_compile_definitions(clipo_gpulibs PRIVATE CLIPO_HAVE_NCCL=1)
      get_filename_component(_d "${_gl_nccl_lib}" DIRECTORY)
      list(APPEND _rpath "${_d}")
    endif()
    # the wheels' folders, found here, are where the loader finds the libraries at run time (never installed)
    set_target_properties(clipo_gpulibs PROPERTIES BUILD_RPATH "${_rpath}")
    message(STATUS "clipo: clipo_gpulibs ON (cuBLASLt: ${_gl_cublas_lib}${_gl_cublas_why}; NCCL: ${_gl_nccl_lib}${_gl_nccl_why})")
  else()
    set(_gl_why "neither cuBLASLt nor NCCL was found")
  endif()
endif()
if(NOT _gl_built)
  message(STATUS "clipo: clipo_gpulibs OFF (${_gl_why})")
endif()

# What the addon reports (gpuLibsInfo / `clipo bench backends`).
function(_clipo_c_string var)
  string(REPLACE "\\" "\\\\" _s "${${var}}")
  string(REPLACE "\"" "\\\"" _s "${_s}")
  set(${var} "${_s}" PARENT_SCOPE)
endfunction()
foreach(v _gl_why _gl_cublas_inc _gl_cublas_lib _gl_cublas_why _gl_nccl_inc _gl_nccl_lib _gl_nccl_why _gl_searched)
  _clipo_c_string(${v})
endforeach()
file(CONFIGURE OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/gen/clipo_gpulibs_build.h CONTENT [=[
// generated by cmake/gpulibs.cmake
#define CLIPO_GPULIBS_BUILT @_gl_built@
#define CLIPO_GPULIBS_WHY "@_gl_why@"
#define CLIPO_GPULIBS_CUBLASLT_INCLUDE "@_gl_cublas_inc@"
#define CLIPO_GPULIBS_CUBLASLT_LIBRARY "@_gl_cublas_lib@"
#define CLIPO_GPULIBS_CUBLASLT_WHY "@_gl_cublas_why@"
#define CLIPO_GPULIBS_NCCL_INCLUDE "@_gl_nccl_inc@"
#define CLIPO_GPULIBS_NCCL_LIBRARY "@_gl_nccl_lib@"
#define CLIPO_GPULIBS_NCCL_WHY "@_gl_nccl_why@"
#define CLIPO_GPULIBS_SEARCHED "@_gl_searched@"
]=] @ONLY)
target_include_directories(${PROJECT_NAME} PRIVATE ${CMAKE_CURRENT_BINARY_DIR}/gen)
