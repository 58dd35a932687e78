// A caching pool for numpy's array data: a NEP 49 data-memory handler (numpy >= 1.22) that keeps
// the large blocks numpy frees and hands them back to the next request of the same size.
//
// Why. A training step allocates the same large temporaries every step (activations, gradients,
// the outputs of matrix products), and glibc returns blocks above its mmap threshold (at most 32 MiB)
// and the top of its heap to the kernel on free. The next step's block is then fresh memory: every
// page faults and is zeroed by the kernel -- with transparent huge pages 2 MiB at a time. YOLOv1's
// step (a 24.5 MiB fully connected weight and its gradient, 6 MiB feature maps) spent 119 ms of
// system time per step that way beside 106 ms of computing (Sapphire Rapids-class Xeon, 1 thread).
//
// Policy. Blocks of at least kMinBlock bytes are rounded up to whole 4 KiB pages; a freed block goes
// to a free list of its exact size, and a request of that size takes the most recently freed one
// (still warm in the cache). Blocks below kMinBlock go to malloc/calloc/free directly (glibc's own
// bins keep those). The cached bytes are bounded (`limit`, default 2 GiB, PYFASTDL_NUMPY_POOL_MB):
// past it the oldest cached blocks are released. Same sizes recur in training, so the blocks cached
// are about one step's temporaries; empty_cache() releases them all.
//
// Scope. numpy keeps a handler per context (a contextvar): install() sets it for the calling
// thread's context (pyfastdl does so at import, unless PYFASTDL_NUMPY_POOL=0), so every numpy array
// made there afterwards -- the user's own too -- is served by the pool; arrays remember the handler
// that made them, so uninstall() at any time is safe. numpy calls the handler with the GIL held;
// the mutex guards against the GIL being released in between anyway.
#define NPY_NO_DEPRECATED_API NPY_1_22_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL pyfastdl_ARRAY_API
#include <numpy/arrayobject.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace pyfastdl {
namespace {

constexpr size_t kMinBlock = size_t(1) << 20;
constexpr size_t kPage = 4096;

struct Pool {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;  // by size, most recently freed last
  std::deque<std::pair<size_t, void*>> order;                  // cached blocks, oldest first
  size_t cached = 0, limit = size_t(2) << 30;
  size_t hits = 0, misses = 0, peak_cached = 0;

  static size_t rounded(size_t n) { return (n + kPage - 1) / kPage * kPage; }

  void* take(size_t n) {
    const size_t s = rounded(n);
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = free_blocks.find(s);
      if (it != free_blocks.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached -= s;
        ++hits;
        for (auto o = order.rbegin(); o != order.rend(); ++o)  // the newest entries are the likely ones
          if (o->second == p) {
            order.erase(std::next(o).base());
            break;
          }
        return p;
      }
      ++misses;
    }
    return std::malloc(s);
  }

  void give(void* p, size_t n) {
    const size_t s = rounded(n);
    std::vector<void*> release;
    {
      std::lock_guard<std::mutex> lock(mu);
      free_blocks[s].push_back(p);
      order.emplace_back(s, p);
      cached += s;
      while (cached > limit && !order.empty()) evict_oldest(release);
      if (cached > peak_cached) peak_cached = cached;
    }
    for (void* q : release) std::free(q);
  }

  // Moves the oldest cached block to `release` (freed by the caller, outside the lock).
  void evict_oldest(std::vector<void*>& release) {
    const auto [s, p] = order.front();
    order.pop_front();
    auto& list = free_blocks[s];
    for (auto it = list.begin(); it != list.end(); ++it)
      if (*it == p) {
        list.erase(it);
        break;
      }
    cached -= s;
    release.push_back(p);
  }

  void clear() {
    std::vector<void*> release;
    {
      std::lock_guard<std::mutex> lock(mu);
      while (!order.empty()) evict_oldest(release);
      free_blocks.clear();
    }
    for (void* q : release) std::free(q);
  }
};

Pool& pool() {
  static Pool* p = new Pool;  // never destroyed: numpy may free pooled arrays during interpreter exit
  return *p;
}

// No request this large can be met, and rounding it up to pages would wrap around.
constexpr size_t kMaxRequest = SIZE_MAX / 2;

void* pool_malloc(void*, size_t n) {
  if (n > kMaxRequest) return nullptr;
  return n >= kMinBlock ? pool().take(n) : std::malloc(n);
}

void* pool_calloc(void*, size_t nelem, size_t elsize) {
  if (elsize != 0 && nelem > SIZE_MAX / elsize) return nullptr;
  const size_t n = nelem * elsize;
  if (n > kMaxRequest) return nullptr;
  if (n < kMinBlock) return std::calloc(nelem, elsize);
  void* p = pool().take(n);
  if (p) std::memset(p, 0, n);
  return p;
}

// Every large block's capacity is its size rounded up to pages (take, and realloc below), which is
// what give() files it under.
void* pool_realloc(void*, void* p, size_t n) {
  if (n > kMaxRequest) return nullptr;
  return std::realloc(p, n >= kMinBlock ? Pool::rounded(n) : n);
}

void pool_free(void*, void* p, size_t n) {
  if (p == nullptr) return;
  if (n >= kMinBlock)
    pool().give(p, n);
  else
    std::free(p);
}

PyDataMem_Handler handler = {
    "pyfastdl_pool", 1, {nullptr, pool_malloc, pool_calloc, pool_realloc, pool_free}};

// The handler numpy used before install(), restored by uninstall() (a strong reference, never
// released at exit: no Python object may be destroyed after the interpreter).
PyObject* previous = nullptr;

}  // namespace

void bind_memory(py::module_& m) {
  if (_import_array() < 0) throw py::error_already_set();
  auto mem = m.def_submodule("memory", "The caching pool for numpy's array data (a NEP 49 handler)");
  mem.def(
      "install",
      [](size_t limit_bytes) {
        {
          std::lock_guard<std::mutex> lock(pool().mu);
          pool().limit = limit_bytes;
        }
        py::object capsule = py::reinterpret_steal<py::object>(PyCapsule_New(&handler, "mem_handler", nullptr));
        if (!capsule) throw py::error_already_set();
        PyObject* old = PyDataMem_SetHandler(capsule.ptr());
        if (!old) throw py::error_already_set();
        if (previous)
          Py_DECREF(old);  // installed already: keep the first one's predecessor
        else
          previous = old;
      },
      py::arg("limit_bytes"),
      "Serve this context's numpy array data from the pool, caching at most limit_bytes of freed blocks");
  mem.def(
      "uninstall",
      [] {
        if (!previous) return;
        PyObject* ours = PyDataMem_SetHandler(previous);
        if (!ours) throw py::error_already_set();
        Py_DECREF(ours);
        Py_DECREF(previous);
        previous = nullptr;
        pool().clear();
      },
      "Give this context's numpy allocations back to the handler before install() and release the cache");
  mem.def("empty_cache", [] { pool().clear(); }, "Release every cached block to the system");
  mem.def(
      "stats",
      [] {
        Pool& p = pool();
        std::lock_guard<std::mutex> lock(p.mu);
        py::dict d;
        d["cached_bytes"] = p.cached;
        d["cached_blocks"] = p.order.size();
        d["peak_cached_bytes"] = p.peak_cached;
        d["limit_bytes"] = p.limit;
        d["hits"] = p.hits;
        d["misses"] = p.misses;
        d["min_block_bytes"] = kMinBlock;
        return d;
      },
      "The pool's counters: bytes and blocks cached now, the peak, the limit, requests served from the "
      "cache (hits) and from the system (misses), the smallest block it caches");
}

}  // namespace pyfastdl
