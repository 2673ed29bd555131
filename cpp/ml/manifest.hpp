#pragma once
// The manifest of an exported force field: the attributes `spinforce export` writes on the
// TorchScript module (python/spinforce/ml/model.py), or the metadata of a .pt2 package
// (python/spinforce/ml/pt2.py), which MLForceField checks when it loads one.
#include <cstdint>
#include <string>

namespace spinforce::manifest {

constexpr const char* kFormat = "spinforce-torchscript";
constexpr int64_t kFormatVersion = 1;
// The compiled AOTInductor package (python/spinforce/ml/pt2.py): the same keys as metadata
// strings, neighbor_offsets as JSON, plus dtype and device (a package runs only in those).
constexpr const char* kPt2Format = "spinforce-pt2";
constexpr int64_t kPt2FormatVersion = 1;
constexpr const char* kDtypeKey = "dtype";
constexpr const char* kDeviceKey = "device";

// Attribute names.
constexpr const char* kFormatKey = "format";
constexpr const char* kFormatVersionKey = "format_version";
constexpr const char* kLatticeKindKey = "lattice_kind";
constexpr const char* kDescriptorKindKey = "descriptor_kind";
constexpr const char* kDescriptorVersionKey = "descriptor_version";
constexpr const char* kNeighborOffsetsKey = "neighbor_offsets";
constexpr const char* kCommitteeSizeKey = "committee_size";  // committees only
constexpr const char* kUncertaintyThresholdKey = "uncertainty_threshold";

// The descriptor kinds of this spinforce with the version of their features (bumped whenever the
// features of the same settings change). A model exported with another version computes other
// features than the ones it was trained on. Python's descriptors carry the same numbers
// (tests/test_ml_manifest.py).
struct DescriptorVersion {
  const char* kind;
  int64_t version;
};
constexpr DescriptorVersion kDescriptorVersions[] = {{"group", 1}, {"bond_shells", 1}, {"ordered_bonds", 1}};

}  // namespace spinforce::manifest
