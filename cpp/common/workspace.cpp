#include "common/workspace.hpp"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <mutex>
#include <unordered_map>
#include <vector>

namespace spinforce {

struct Workspace::Pool {
  std::mutex mutex;
  std::unordered_map<std::size_t, std::vector<void*>> free;  // by size in bytes
  std::size_t reserved = 0, served = 0, reused = 0;

  ~Pool() {
    for (auto& [size, blocks] : free)
      for (void* p : blocks) c10::free_cpu(p);
  }
};

namespace {

thread_local std::shared_ptr<Workspace::Pool> active_pool;

// Blocks in use, by address: the deleter finds its pool here, so that a block's context is its
// own address as for torch's default allocator (raw_allocate relies on that).
struct InUse {
  std::mutex mutex;
  std::unordered_map<void*, std::pair<std::shared_ptr<Workspace::Pool>, std::size_t>> blocks;
};
InUse& in_use() {
  static InUse* table = new InUse();  // never destroyed: tensors may be freed at exit
  return *table;
}

void give_back(void* ptr) {
  std::shared_ptr<Workspace::Pool> pool;
  std::size_t size = 0;
  {
    InUse& t = in_use();
    std::lock_guard<std::mutex> lock(t.mutex);
    auto it = t.blocks.find(ptr);
    pool = std::move(it->second.first);
    size = it->second.second;
    t.blocks.erase(it);
  }
  std::lock_guard<std::mutex> lock(pool->mutex);
  pool->free[size].push_back(ptr);
}

c10::DeleterFnPtr fallback_deleter = nullptr;

// For raw_allocate / raw_deallocate: a workspace block or the fallback allocator's memory.
void delete_any(void* ptr) {
  bool ours = false;
  {
    InUse& t = in_use();
    std::lock_guard<std::mutex> lock(t.mutex);
    ours = t.blocks.count(ptr) > 0;
  }
  if (ours) {
    give_back(ptr);
  } else {
    fallback_deleter(ptr);
  }
}

class WorkspaceAllocator final : public c10::Allocator {
 public:
  explicit WorkspaceAllocator(c10::Allocator* fallback) : fallback_(fallback) {}

  c10::DataPtr allocate(std::size_t n) override {
    const std::shared_ptr<Workspace::Pool>& pool = active_pool;
    if (!pool || n < kWorkspaceMinBytes) return fallback_->allocate(n);
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(pool->mutex);
      ++pool->served;
      auto it = pool->free.find(n);
      if (it != pool->free.end() && !it->second.empty()) {
        p = it->second.back();
        it->second.pop_back();
        ++pool->reused;
      }
    }
    if (p == nullptr) {
      p = c10::alloc_cpu(n);
      std::lock_guard<std::mutex> lock(pool->mutex);
      pool->reserved += n;
    }
    {
      InUse& t = in_use();
      std::lock_guard<std::mutex> lock(t.mutex);
      t.blocks.emplace(p, std::make_pair(pool, n));
    }
    return {p, p, &give_back, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return fallback_deleter ? &delete_any : nullptr; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

 private:
  c10::Allocator* fallback_;
};

void install_allocator() {
  static const bool installed = [] {
    c10::Allocator* current = c10::GetCPUAllocator();
    fallback_deleter = current->raw_deleter();
    // Priority above torch's own registration, so that ours is the one in force.
    c10::SetCPUAllocator(new WorkspaceAllocator(current), /*priority=*/100);
    return true;
  }();
  (void)installed;
}

}  // namespace

Workspace::Workspace() : pool_(std::make_shared<Pool>()) { install_allocator(); }
Workspace::~Workspace() = default;

Workspace::Scope::Scope(Workspace& workspace) : previous_(std::move(active_pool)) { active_pool = workspace.pool_; }
Workspace::Scope::~Scope() { active_pool = std::move(previous_); }

std::size_t Workspace::reserved_bytes() const {
  std::lock_guard<std::mutex> lock(pool_->mutex);
  return pool_->reserved;
}
std::size_t Workspace::blocks_served() const {
  std::lock_guard<std::mutex> lock(pool_->mutex);
  return pool_->served;
}
std::size_t Workspace::blocks_reused() const {
  std::lock_guard<std::mutex> lock(pool_->mutex);
  return pool_->reused;
}

}  // namespace spinforce
