#pragma once
// Error helpers. std::invalid_argument becomes a Python ValueError through pybind11, so every
// message names the offending parameter and the range it must lie in.
#include <sstream>
#include <stdexcept>
#include <string>

namespace spinforce {

template <class... Args>
[[noreturn]] void value_error(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  throw std::invalid_argument(os.str());
}

template <class... Args>
void require(bool condition, const Args&... args) {
  if (!condition) value_error(args...);
}

}  // namespace spinforce
