#pragma once
// Guards for large or long work: memory needs are checked before allocating, and long serial
// loops poll for an interrupt (Ctrl-C) so that no call into the core is stuck until it ends.
#include <string>

namespace spinforce {

// Total physical memory of this machine in bytes (0 when unknown).
double physical_memory_bytes();

// ValueError naming `what` when `bytes` exceeds the physical memory of this machine.
void require_memory(double bytes, const std::string& what);

// Called from long serial loops (never inside a parallel region). At most every 0.1 s it calls
// the handler installed by the Python bindings, which raises KeyboardInterrupt after Ctrl-C.
void poll_interrupt();
void set_interrupt_handler(void (*handler)());

}  // namespace spinforce
