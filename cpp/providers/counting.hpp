#pragma once
// Forwards to another provider and counts its evaluations: tests use it to see how often a
// driver evaluates the fields.
#include <memory>

#include "common/errors.hpp"
#include "providers/field_provider.hpp"

namespace spinforce {

class CountingProvider : public FieldProvider {
 public:
  explicit CountingProvider(std::shared_ptr<FieldProvider> inner) : inner_(std::move(inner)) {
    require(inner_ != nullptr, "provider must be a field provider, got None");
  }
  int64_t num_sites() const override { return inner_->num_sites(); }
  std::string name() const override { return inner_->name(); }
  std::string title() const override { return inner_->title(); }
  FieldResult compute(const at::Tensor& spins) override {
    ++evaluations_;
    return inner_->compute(spins);
  }
  int64_t evaluations() const { return evaluations_; }

 private:
  std::shared_ptr<FieldProvider> inner_;
  int64_t evaluations_ = 0;
};

}  // namespace spinforce
