// SHA-256 (FIPS 180-4), for cache keys: content fingerprints that must not collide by accident.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace nightshift {

class Sha256 {
 public:
  Sha256();
  void Update(std::string_view data);
  // The digest as 64 lowercase hex characters. Call once.
  std::string HexDigest();

 private:
  void Block(const uint8_t* block);
  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t length_ = 0;  // bytes
};

}  // namespace nightshift
