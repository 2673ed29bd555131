#include "common/limits.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>

#include "common/errors.hpp"

namespace spinforce {
namespace {

std::atomic<void (*)()> interrupt_handler{nullptr};
constexpr double kPollSeconds = 0.1;

std::string gigabytes(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3g GB", bytes / 1e9);
  return text;
}

}  // namespace

double physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page_size > 0 ? static_cast<double>(pages) * static_cast<double>(page_size) : 0.0;
}

void require_memory(double bytes, const std::string& what) {
  const double available = physical_memory_bytes();
  if (available > 0 && bytes > available)
    value_error(what, " needs ", gigabytes(bytes), ", more than the ", gigabytes(available),
                " of memory of this machine: use a smaller lattice");
}

void set_interrupt_handler(void (*handler)()) { interrupt_handler.store(handler); }

void poll_interrupt() {
  using Clock = std::chrono::steady_clock;
  thread_local Clock::time_point last = Clock::now();
  const auto now = Clock::now();
  if (std::chrono::duration<double>(now - last).count() < kPollSeconds) return;
  last = now;
  if (auto handler = interrupt_handler.load()) handler();
}

}  // namespace spinforce
