#include "scheduler/cache_key.h"

#include <glob.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

#include "core/sha256.h"

namespace nightshift {
namespace {

namespace fs = std::filesystem;

bool RunSpecific(const std::string& name) {
  static const std::set<std::string> kNames = {"NIGHTSHIFT_RUN_ID", "NIGHTSHIFT_TRY_NUMBER",
                                               "NIGHTSHIFT_LOGICAL_DATE", "NIGHTSHIFT_DS", "NIGHTSHIFT_OUTPUT"};
  return kNames.count(name) > 0;
}

std::string Resolve(const std::string& cwd, const std::string& path) {
  return fs::path(path).is_absolute() ? path : (fs::path(cwd) / path).string();
}

Result<std::string> HashFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("cannot read cache input " + path);
  Sha256 h;
  std::vector<char> buffer(1 << 16);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    h.Update(std::string_view(buffer.data(), static_cast<size_t>(in.gcount())));
  }
  return h.HexDigest();
}

void Field(Sha256& h, std::string_view text) {
  h.Update(text);
  h.Update(std::string_view("\0", 1));  // separator: "ab"+"c" never hashes like "a"+"bc"
}

}  // namespace

Result<std::string> ComputeCacheKey(const CacheSpec& cache, const TaskSpec& spec,
                                    const std::map<std::string, std::string_view>& unwritten) {
  Sha256 h;
  Field(h, "nightshift-cache-v1");
  Field(h, spec.command);
  for (const auto& [name, value] : spec.env) {  // std::map: sorted, so order never changes the key
    if (RunSpecific(name)) continue;
    Field(h, name);
    if (name.starts_with("NIGHTSHIFT_INPUT_") && name.ends_with("_FILE")) {
      // A large upstream output: its content, not its path.
      if (auto pending = unwritten.find(value); pending != unwritten.end()) {
        Sha256 content;
        content.Update(pending->second);
        Field(h, content.HexDigest());
        continue;
      }
      auto content = HashFile(value);
      if (!content.ok()) return content.status();
      Field(h, *content);
    } else {
      Field(h, value);
    }
  }
  for (const std::string& pattern : cache.inputs) {
    Field(h, "input:" + pattern);
    glob_t matches{};
    const std::string full = Resolve(spec.cwd, pattern);
    int rc = glob(full.c_str(), GLOB_NOSORT, nullptr, &matches);
    std::vector<std::string> files;
    if (rc == 0) {
      for (size_t i = 0; i < matches.gl_pathc; ++i) files.emplace_back(matches.gl_pathv[i]);
    }
    globfree(&matches);
    std::sort(files.begin(), files.end());
    for (const std::string& file : files) {
      std::error_code ec;
      if (!fs::is_regular_file(file, ec)) continue;
      auto content = HashFile(file);
      if (!content.ok()) return content.status();
      Field(h, fs::path(file).lexically_relative(spec.cwd).string());
      Field(h, *content);
    }
  }
  return h.HexDigest();
}

bool CacheOutputsPresent(const CacheSpec& cache, const std::string& cwd, std::string* missing) {
  for (const std::string& output : cache.outputs) {
    std::error_code ec;
    if (!fs::exists(Resolve(cwd, output), ec)) {
      *missing = output;
      return false;
    }
  }
  return true;
}

}  // namespace nightshift
