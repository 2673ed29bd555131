#pragma once
// Memory that a field provider keeps from one evaluation to the next. While a Workspace::Scope
// is open on a thread (around a provider's compute), every CPU tensor of at least
// kWorkspaceMinBytes that torch allocates on that thread, the intermediate tensors of a
// TorchScript network and its backward pass included, takes a block of exactly that size that
// the workspace kept from an earlier evaluation, and gives it back when freed. An evaluation of
// the same lattice asks for the same sizes every time, so after the first one it allocates
// nothing: no fresh pages, no page faults (glibc hands blocks this large back to the kernel on
// every free). The blocks are returned to the system when the provider is destroyed.
//
// The hook is a CPU allocator installed into torch on the first workspace; outside a scope it
// passes every request to the allocator it replaced, so other code sees no difference.
#include <cstddef>
#include <memory>

namespace spinforce {

constexpr std::size_t kWorkspaceMinBytes = std::size_t(1) << 20;

class Workspace {
 public:
  Workspace();
  ~Workspace();
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  struct Pool;
  class Scope {
   public:
    explicit Scope(Workspace& workspace);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    std::shared_ptr<Pool> previous_;
  };

  // Bytes of the blocks this workspace has allocated (held free or in use).
  std::size_t reserved_bytes() const;
  // Blocks handed out so far, and how many of them were reused.
  std::size_t blocks_served() const;
  std::size_t blocks_reused() const;

 private:
  std::shared_ptr<Pool> pool_;
};

}  // namespace spinforce
