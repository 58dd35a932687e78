// Exceptions and OpenMP. An exception that leaves a parallel region terminates the process (the
// runtime calls std::terminate), so nothing inside one may throw out of it:
//   * per-thread scratch is allocated before the region (ThreadScratch): a failed allocation there
//     reaches Python as MemoryError;
//   * where a loop body may throw (a worksharing loop with no barrier inside its body), the body runs
//     through FirstError::run, and rethrow() after the region reports the first exception;
//   * per-thread buffers sized inside a region that has barriers go through TeamAllocation.
#pragma once
#include <omp.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <new>

namespace pyfastdl::cpu {

// `per_thread` uninitialised values for each thread of a region that runs with up to
// omp_get_max_threads() threads (or one, when `parallel` is false); get() is the calling thread's.
template <class T>
class ThreadScratch {
 public:
  ThreadScratch(int64_t per_thread, bool parallel) : n_(per_thread) {
    const int64_t threads = parallel ? omp_get_max_threads() : 1;
    if (per_thread < 0 || (per_thread > 0 && threads > PTRDIFF_MAX / int64_t(sizeof(T)) / per_thread))
      throw std::bad_alloc();
    buf_.reset(new T[per_thread * threads]);
  }
  T* get() const { return buf_.get() + omp_get_thread_num() * n_; }

 private:
  int64_t n_;
  std::unique_ptr<T[]> buf_;
};

// The first exception thrown by any iteration of a parallel loop; the other iterations still run.
class FirstError {
 public:
  template <class Fn>
  void run(Fn&& fn) noexcept {
    try {
      fn();
    } catch (...) {
#pragma omp critical(pyfastdl_first_error)
      if (!error_) error_ = std::current_exception();
    }
  }
  bool failed() const { return bool(error_); }
  void rethrow() const {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::exception_ptr error_;
};

// Per-thread allocations inside a region with barriers, where each thread's sizes are only known
// inside it. Every thread allocates through allocate(), which then meets the others at a barrier:
// when any allocation failed, every thread gets false and skips the work (so none waits at a later
// barrier that the others never reach), and rethrow() after the region reports the failure.
class TeamAllocation {
 public:
  template <class Fn>
  bool allocate(Fn&& fn) noexcept {
    error_.run(fn);
#pragma omp barrier
    return !error_.failed();
  }
  void rethrow() const { error_.rethrow(); }

 private:
  FirstError error_;
};

}  // namespace pyfastdl::cpu
